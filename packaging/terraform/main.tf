# Example: user-data for an image that carries imprint, built with
# Terraform's own functions only (no provider needed, so `terraform apply`
# runs offline and this example is tested as is: see test.sh).
#
# In a real configuration you would pass `local.user_data_b64` to your
# instance, e.g. aws_instance.user_data_base64, or build the same document
# with the hashicorp/cloudinit provider (see cloudinit.tf.example).

variable "environment" {
  type    = string
  default = "staging"
}

variable "db_host" {
  type    = string
  default = "db.staging.internal"
}

variable "db_password" {
  type      = string
  default   = "change-me-Pa$$word"
  sensitive = true
}

locals {
  # The values imprint validates against the image's manifest. JSON parts
  # give values at their top level.
  values_json = jsonencode({
    db         = { password = var.db_password, port = 6432 }
    papertrail = { url = "logs.papertrailapp.com:12345" }
  })

  # A #cloud-config part: values under `imprint:`, plus write_files, which
  # imprint honours like cloud-init (entries of all parts are concatenated).
  cloud_config = "#cloud-config\n${yamlencode({
    imprint = {
      app = {
        env      = var.environment
        greeting = "hello from ${var.environment}"
      }
      db = { host = var.db_host }
    }
    write_files = [{
      path        = "/etc/motd"
      content     = "Configured by imprint for ${var.environment}.\n"
      permissions = "0644"
    }]
  })}"

  # The multipart document, byte for byte the shape of the cloudinit
  # provider's `cloudinit_config` (boundary MIMEBOUNDARY, CRLF line ends).
  parts = [
    { content_type = "text/cloud-config", content = local.cloud_config },
    { content_type = "application/json", content = local.values_json },
  ]
  multipart = join("", concat(
    ["Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\r\nMIME-Version: 1.0\r\n\r\n"],
    [for p in local.parts : "--MIMEBOUNDARY\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: ${p.content_type}\r\nMime-Version: 1.0\r\n\r\n${p.content}\r\n"],
    ["--MIMEBOUNDARY--\r\n"],
  ))
}

# gzip = true, base64_encode = true: what EC2's user_data_base64 takes.
output "user_data_b64" {
  value = base64gzip(local.multipart)
}

# The same values as plain JSON user-data (a single part).
output "user_data_json" {
  value     = local.values_json
  sensitive = true
}

output "cloud_config" {
  value = local.cloud_config
}
