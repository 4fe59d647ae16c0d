# Athena and S3 from R without keys: /etc/aws/config (AWS_CONFIG_FILE) makes every AWS SDK in this session assume the
# instance's Athena role with the task role's credentials. Copied into your home on the first start of the server;
# later starts never overwrite it, so edit freely. ATHENA_WORKGROUP keeps query results in the instance's own bucket.

# 1. noctua (DBI over paws): the workgroup supplies the result location.
library(DBI)
con <- dbConnect(noctua::athena(),
                 work_group = Sys.getenv("ATHENA_WORKGROUP"), region_name = Sys.getenv("ATHENA_REGION"))
dbGetQuery(con, "SELECT current_date AS today")
dbDisconnect(con)

# 2. RJDBC with the Athena JDBC 3.x driver: its Java SDK reads the same default profile.
drv <- RJDBC::JDBC(Sys.getenv("ATHENA_JDBC_DRIVER"), Sys.getenv("ATHENA_JDBC_JAR"))
url <- sprintf("jdbc:athena://Region=%s;WorkGroup=%s;CredentialsProvider=ProfileCredentials;ProfileName=default",
               Sys.getenv("ATHENA_REGION"), Sys.getenv("ATHENA_WORKGROUP"))
jcon <- dbConnect(drv, url)
dbGetQuery(jcon, "SELECT current_date AS today")
dbDisconnect(jcon)

# 3. An upload from the instance's upload bucket with paws (uploads land under hourly/ and instant/).
account <- strsplit(Sys.getenv("ATHENA_ROLE_ARN"), ":", fixed = TRUE)[[1]][5]
bucket <- sprintf("%s-uploads-%s-%s", Sys.getenv("ATHENA_WORKGROUP"), account, Sys.getenv("ATHENA_REGION"))
s3 <- paws::s3(config = list(region = Sys.getenv("ATHENA_REGION")))
keys <- vapply(s3$list_objects_v2(Bucket = bucket, Prefix = "instant/")$Contents, function(o) o$Key, "")
print(keys)
if (length(keys) > 0) {
  body <- s3$get_object(Bucket = bucket, Key = keys[[1]])$Body
  print(read.csv(text = rawToChar(body)))
}
