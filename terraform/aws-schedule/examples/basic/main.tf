# Periodic tasks without a beat process: EventBridge Scheduler sends each tick into the queue.
#
#   cloudq -A tasks beat --export eventbridge > schedules.json
#   terraform apply -var-file=schedules.json     # defines var.schedules

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

variable "schedules" {
  description = "Entries from `cloudq beat --export eventbridge`."
  type = map(object({
    schedule_expression = string
    queue               = string
    input               = string
    timezone            = optional(string, "UTC")
  }))
}

module "queues" {
  source = "../../../aws-queue"

  prefix = "shop-"
  queues = { default = {} }
}

module "schedule" {
  source = "../.."

  name       = "shop"
  schedules  = var.schedules
  queue_arns = { for name, q in module.queues.queues : name => q.arn }
}

output "schedule_arns" {
  description = "Schedules by entry name."
  value       = module.schedule.schedule_arns
}
