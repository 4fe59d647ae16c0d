"""CloudFormation limits that the generator, the checks and the orchestrator all have to respect."""

# Largest template CreateStackSet/UpdateStackSet accept inline (TemplateBody). Larger ones are deployed from S3
# (TemplateURL): the orchestrator uploads the committed bytes unchanged to a staging bucket in the admin account.
TEMPLATE_BODY_BYTES = 51_200
# Largest template CloudFormation accepts at all, from S3.
TEMPLATE_URL_BYTES = 1_000_000
# Resources in one template.
MAX_RESOURCES = 500
