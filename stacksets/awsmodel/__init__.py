"""One model of the AWS behaviour the orchestrator depends on, under real boto3 clients.

Tests, `bench/` and `deploy.py --sandbox` share it (`stacksets.awsmodel.model.AwsModel`). botocore still validates
every request against the real service model and raises the real exception classes; the model answers from its own
state instead of the network (`adapter.py`), and every rule it enforces names its source (docs/aws_model.md).
"""
