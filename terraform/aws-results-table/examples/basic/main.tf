# The results table of an app: `App(..., backend="dynamodb://shop-results")`.

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

module "results" {
  source = "../.."

  name = "shop-results"
}

output "backend_url" {
  description = "CLOUDQ_RESULT_BACKEND."
  value       = module.results.backend_url
}
