# Example: bake imprint into an image. The image carries the code, the
# manifest and the templates; user-data (from Terraform) carries the data.
#
#   packer init . && packer build -var version=1.2.3 .
#
# The last provisioner step, `imprint clean --machine-id`, forgets any seal
# and empties /etc/machine-id so every instance launched from the image is
# configured at its first boot (a seal is keyed by instance-id anyway, so a
# forgotten clean only costs nothing on clouds with offline instance-ids).

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "version" {
  type    = string
  default = "dev"
}

source "amazon-ebs" "app" {
  ami_name      = "app-${var.version}-{{timestamp}}"
  instance_type = "t3.small"
  region        = "eu-west-1"
  ssh_username  = "admin"
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
}

build {
  sources = ["source.amazon-ebs.app"]

  # The package: binary, imprint.service (enabled by preset, not started),
  # the generator, the man page.
  provisioner "file" {
    source      = "imprint_amd64.deb"
    destination = "/tmp/imprint_amd64.deb"
  }

  # The manifest and templates of this image (see fixtures/demo/root).
  provisioner "file" {
    source      = "imprint/"
    destination = "/tmp/imprint"
  }

  provisioner "shell" {
    inline = [
      "sudo apt-get install -y /tmp/imprint_amd64.deb",
      "sudo install -d -m 0755 /etc/imprint/templates",
      "sudo cp -r /tmp/imprint/. /etc/imprint/",
      # Check the manifest and templates against sample user-data now, at
      # build time, rather than at first boot.
      "sudo imprint validate --user-data /etc/imprint/sample-user-data",
      # Forget any seal and the machine-id: every instance is configured.
      "sudo imprint clean --machine-id",
    ]
  }
}
