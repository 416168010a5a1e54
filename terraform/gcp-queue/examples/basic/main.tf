# The topics and subscriptions of an app served by `cloudq worker` processes (pull), with
# dead-letter topics. Not applied in cloudq's tests: the google provider cannot be installed there.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0, < 7.0"
    }
  }
}

variable "project" {
  description = "Google Cloud project id."
  type        = string
}

provider "google" {
  project = var.project
}

module "queues" {
  source = "../.."

  project = var.project
  prefix  = "shop-"
  queues = {
    default = {}
    high    = { visibility_timeout_seconds = 60, max_receive_count = 5 }
  }
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for the workers and producers."
  value       = module.queues.broker_url
}
