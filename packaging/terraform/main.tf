# Example: the user-data for an image that carries imprint, built with
# Terraform's own functions (jsonencode, yamlencode, base64gzip), and checked
# with `imprint validate` against the image's manifest before anything that
# uses it is created. No provider is needed: `terraform init && terraform
# apply` run offline, and tests/packaging_terraform.rs runs exactly that.
#
#   terraform init
#   terraform apply -var image_root=/path/to/image/root   # needs imprint on PATH
#   terraform output -raw user_data_b64                   # what EC2 takes
#
# In a real configuration, pass local.user_data_b64 to the instance
# (aws_instance.user_data_base64 = local.user_data_b64) and make it depend on
# terraform_data.user_data_valid, so a bad value stops `apply` before any
# instance exists. The hashicorp/cloudinit provider's cloudinit_config builds
# the same document (see cloudinit.tf.example); this file writes it out by
# hand only so that it runs without a provider download.

terraform {
  required_version = ">= 1.4" # terraform_data
}

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

# The image side: a directory holding etc/imprint/imprint.yaml and its
# templates, as baked by Packer (here: the demo image of this repository).
variable "image_root" {
  type    = string
  default = "../../fixtures/demo/root"
}

# The imprint binary that checks the user-data (on the machine running
# Terraform: a CI runner, a laptop).
variable "imprint" {
  type    = string
  default = "imprint"
}

locals {
  # A JSON part: its top-level keys are values (SPEC §3).
  values_json = jsonencode({
    db         = { password = var.db_password, port = 6432 }
    papertrail = { url = "logs.papertrailapp.com:12345" }
  })

  # A #cloud-config part: values under `imprint:`, and write_files, which
  # imprint applies like cloud-init does (entries of all parts concatenated).
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

  parts = [
    { content_type = "text/cloud-config", filename = "cloud-config.yaml", content = local.cloud_config },
    { content_type = "application/json", filename = "values.json", content = local.values_json },
  ]

  # Byte for byte what cloudinit_config renders (Go's mime/multipart with
  # boundary MIMEBOUNDARY: an LF after the first header line, CRLF
  # elsewhere, part headers in sorted order).
  multipart = join("", concat(
    ["Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\nMIME-Version: 1.0\r\n\r\n"],
    [for i, p in local.parts : join("", [
      i == 0 ? "" : "\r\n",
      "--MIMEBOUNDARY\r\n",
      "Content-Disposition: attachment; filename=\"${p.filename}\"\r\n",
      "Content-Transfer-Encoding: 7bit\r\n",
      "Content-Type: ${p.content_type}\r\n",
      "Mime-Version: 1.0\r\n\r\n",
      p.content,
    ])],
    ["\r\n--MIMEBOUNDARY--\r\n"],
  ))

  # gzip = true, base64_encode = true: what EC2's user_data_base64 takes.
  user_data_b64 = base64gzip(local.multipart)
}

# `imprint validate` against the image's manifest, at apply time, before
# anything that depends on this resource. It prints every problem at once
# (dotted key, expected, found, part and line) and never a secret value, so
# its output is safe to show: the user-data reaches it through the
# environment (never logged), marked nonsensitive only there so that
# Terraform does not hide imprint's report.
resource "terraform_data" "user_data_valid" {
  triggers_replace = [local.user_data_b64, var.image_root]

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "printf '%s' \"$USER_DATA\" | \"$IMPRINT\" validate --root \"$IMAGE_ROOT\" --user-data -"
    environment = {
      USER_DATA  = nonsensitive(local.user_data_b64)
      IMPRINT    = var.imprint
      IMAGE_ROOT = abspath(var.image_root)
    }
  }
}

output "user_data_b64" {
  value     = local.user_data_b64
  sensitive = true
}

# The same document before gzip and base64 (to read it, or for platforms
# that take plain user-data).
output "user_data_multipart" {
  value     = local.multipart
  sensitive = true
}

output "cloud_config" {
  value = local.cloud_config
}

output "values_json" {
  value     = local.values_json
  sensitive = true
}
