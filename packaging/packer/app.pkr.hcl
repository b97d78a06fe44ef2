# Example: bake imprint into an image. The image carries the code, the
# manifest and the templates; user-data (from Terraform) carries the data.
#
#   packaging/build.sh                           # the .deb, in target/packages/
#   cd packaging/packer && packer init . && packer build -var version=1.2.3 .
#
# For an arm64 image (Graviton): `packaging/build.sh --arch arm64` (or
# `all`), then `packer build -var arch=arm64 -var version=1.2.3 .`: the
# package, the instance type and Debian's source image follow `arch`.
#
# The steps of the shell provisioner, on a sandbox instead of a VM, are
# what tests/packaging.sh runs after a real `dpkg --root` install of the
# package (install, manifest, validate, clean), and docs/lockout.md explains
# each of them. Not run by the tests itself: it needs AWS.

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

# amd64 or arm64 (packaging/build.sh --arch).
variable "arch" {
  type    = string
  default = "amd64"
  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch variable must be amd64 or arm64."
  }
}

# The package built by packaging/build.sh; empty: the one for var.arch.
variable "deb" {
  type    = string
  default = ""
}

locals {
  deb           = var.deb != "" ? var.deb : "../../target/packages/imprint_0.1.0-1_${var.arch}.deb"
  instance_type = var.arch == "arm64" ? "t4g.small" : "t3.small"
}

# The image side of the contract: etc/imprint/imprint.yaml and templates/
# (here the demo image's), and sample user-data to check them against.
variable "image_files" {
  type    = string
  default = "../../fixtures/demo/root/etc/imprint"
}

variable "sample_user_data" {
  type    = string
  default = "../../fixtures/demo/user-data.b64"
}

source "amazon-ebs" "app" {
  ami_name      = "app-${var.version}-{{timestamp}}"
  instance_type = local.instance_type
  region        = "eu-west-1"
  ssh_username  = "admin"
  source_ami_filter {
    filters = {
      name                = "debian-12-${var.arch}-*"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
}

build {
  sources = ["source.amazon-ebs.app"]

  provisioner "file" {
    source      = local.deb
    destination = "/tmp/imprint.deb"
  }

  # A trailing slash copies the directory's contents.
  provisioner "file" {
    source      = "${var.image_files}/"
    destination = "/tmp/imprint-files"
  }

  provisioner "file" {
    source      = var.sample_user_data
    destination = "/tmp/sample-user-data"
  }

  provisioner "shell" {
    inline = [
      "set -eux",
      # Debian's cloud images carry cloud-init: one first-boot configurator
      # per image. Without cloud-init, instances no longer get the EC2 key
      # pair in authorized_keys: bake the admin keys into the image (or use
      # SSM), as docs/packaging.md says.
      "sudo apt-get purge -y cloud-init cloud-guest-utils || true",
      # The binary, imprint.service and imprint-host-keys.service (enabled,
      # not started), the generator, the verify timer (disabled), man pages,
      # and the cloud-init name (free now) for `cloud-init status`.
      "sudo apt-get install -y /tmp/imprint.deb",
      "systemctl is-enabled imprint.service imprint-host-keys.service",
      "sudo install -d -m 0755 /etc/imprint",
      "sudo cp -R /tmp/imprint-files/. /etc/imprint/",
      # Check the manifest and every template against sample user-data now,
      # at build time, rather than at first boot (validate renders every
      # file too, in memory, and writes nothing).
      "sudo imprint validate --user-data /tmp/sample-user-data",
      "rm -f /tmp/imprint.deb /tmp/sample-user-data",
      # Last: forget any seal and the machine-id, so that every instance
      # launched from the image is configured at its first boot and gets a
      # machine-id of its own; and remove the build VM's ssh host keys: the
      # manifest's ssh_host_keys gives every instance keys of its own (clean
      # refuses --host-keys when it lists none), and a boot where that could
      # not happen has none (sshd refuses to start) rather than keys every
      # clone shares (docs/lockout.md, step 5).
      "sudo imprint clean --machine-id --host-keys",
    ]
  }
}
