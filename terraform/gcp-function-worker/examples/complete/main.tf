# A cloudq app on Cloud Functions (gen2): its topics, dead-letter topics and the worker function,
# pushed to by one subscription per queue. Inputs:
#
#   cloudq -A tasks terraform export -o cloudq.auto.tfvars.json   # app, queue_prefix, queues, ...
#   cloudq -A tasks deploy package --target gcf -o build/gcf.zip
#   terraform apply -var project=my-project -var name=shop -var package_path=build/gcf.zip
#
# Not applied in cloudq's tests: the google provider cannot be installed there (fmt + parsing only).

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

module "queues" {
  source = "../../../gcp-queue"

  project = var.project
  prefix  = var.queue_prefix
  queues  = var.queues
  # The function's push subscriptions take the queues' subscription names.
  pull_subscriptions      = false
  claim_check_bucket_name = var.claim_check_bucket_name
}

module "worker" {
  source = "../../../gcp-function-worker"

  project            = var.project
  region             = var.region
  function_name      = "${var.name}-worker"
  package_path       = var.package_path
  timeout_seconds    = min(600, var.function_timeout_seconds)
  app                = var.app
  broker_url         = module.queues.broker_url
  result_backend     = "firestore://${var.project}"
  firestore_database = "(default)"
  claim_check_url    = module.queues.claim_check_url
  claim_check_bucket = module.queues.claim_check_bucket
  claim_check_prefix = module.queues.claim_check_prefix
  queues             = module.queues.queues
  schedules          = var.schedules
}
