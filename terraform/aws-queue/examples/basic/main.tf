# The queues of an app served by `cloudq worker` processes (no Lambda): a standard queue and a
# FIFO queue, each with its dead-letter queue, and a claim-check bucket.

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
  region = "eu-west-1"
}

module "queues" {
  source = "../.."

  prefix = "shop-"
  queues = {
    default       = {}
    high          = { visibility_timeout_seconds = 60, max_receive_count = 5 }
    "orders.fifo" = { fifo = true }
  }
  claim_check_bucket_name = "shop-cloudq-claim-checks"
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for the workers and producers."
  value       = module.queues.broker_url
}

output "claim_check_url" {
  description = "CLOUDQ_CLAIM_CHECK_URL."
  value       = module.queues.claim_check_url
}

output "queues" {
  description = "The queues and their dead-letter queues."
  value       = module.queues.queues
}
