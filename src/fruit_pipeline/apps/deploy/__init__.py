"""fruit-deploy: the AWS side (S3, CloudFormation, EMR) provisioned and driven as code."""
