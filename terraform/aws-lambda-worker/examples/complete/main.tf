# A cloudq app on Lambda: its queues (+ DLQs), a results table, the worker function and,
# optionally, EventBridge schedules. Inputs come from two commands:
#
#   cloudq -A tasks terraform export -o cloudq.auto.tfvars.json   # app, queue_prefix, queues, function_timeout_seconds
#   cloudq -A tasks deploy package --target lambda -o build/lambda.zip
#   terraform apply -var name=shop -var package_path=build/lambda.zip

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "queues" {
  source = "../../../aws-queue"

  prefix                    = var.queue_prefix
  queues                    = var.queues
  function_timeout_seconds  = var.function_timeout_seconds
  claim_check_bucket_name   = var.claim_check_bucket_name
  claim_check_force_destroy = true
  kms_key_id                = var.queue_kms_key_id
  tags                      = var.tags
}

module "results" {
  source = "../../../aws-results-table"

  name = "${var.name}-results"
  tags = var.tags
}

module "worker" {
  source = "../../../aws-lambda-worker"

  function_name   = "${var.name}-worker"
  package_path    = var.package_path
  timeout_seconds = var.function_timeout_seconds
  app             = var.app
  broker_url      = module.queues.broker_url
  result_backend  = module.results.backend_url
  claim_check_url = module.queues.claim_check_url

  queues                 = module.queues.queues
  results_table_arn      = module.results.table_arn
  claim_check_bucket_arn = module.queues.claim_check_bucket_arn
  claim_check_prefix     = module.queues.claim_check_prefix
  kms_key_arns           = compact([module.queues.kms_key_arn])
  batch_size             = var.batch_size
  maximum_concurrency    = var.maximum_concurrency
  tags                   = var.tags
}

module "schedule" {
  source = "../../../aws-schedule"
  count  = length(var.schedules) > 0 ? 1 : 0

  name         = var.name
  schedules    = var.schedules
  queue_arns   = { for name, q in module.queues.queues : name => q.arn }
  kms_key_arns = compact([module.queues.kms_key_arn])
  tags         = var.tags
}
