# The local cluster's two regions (cluster/local.toml), provisioned with
# built-in providers only: every node file and balancer file is rendered by
# the region module, written under out/, and checked by `meridian validate`.
# `meridian cluster up` starts the same layout in network namespaces.

terraform {
  required_version = ">= 1.6"
}

variable "meridian" {
  description = "The meridian binary used to validate what is rendered."
  type        = string
  default     = "../../../target/debug/meridian"
}

variable "out_dir" {
  description = "Where the rendered files go (absolute, or relative to this folder)."
  type        = string
  default     = "out"
}

variable "admin_token" {
  type      = string
  sensitive = true
  default   = "local-admin-token-change-me"
}

locals {
  out = startswith(var.out_dir, "/") ? var.out_dir : abspath("${path.module}/${var.out_dir}")
  regions = {
    eu = { subnet = "10.81.1.0/24", location = { lat = 50.1, lon = 8.7 } }
    us = { subnet = "10.81.2.0/24", location = { lat = 38.9, lon = -77.0 } }
  }
  gslbs = { dns1 = "10.81.0.51", dns2 = "10.81.0.52" }
  clients = {
    paris   = { ip = "10.81.0.101", location = { lat = 48.9, lon = 2.35 } }
    newyork = { ip = "10.81.0.102", location = { lat = 40.7, lon = -74.0 } }
  }
  node_names = flatten([for r, _ in local.regions : [for i in [1, 2, 3] : { region = r, name = "${r}-n${i}" }]])
}

module "region" {
  source   = "../../modules/region"
  for_each = local.regions

  region         = each.key
  subnet         = each.value.subnet
  location       = each.value.location
  nodes          = [for i in [1, 2, 3] : { id = i, address = cidrhost(each.value.subnet, 10 + i) }]
  vips           = [for i in [1, 2, 3] : "${cidrhost(each.value.subnet, 100 + i)}/24"]
  redis_url      = "redis://${cidrhost(each.value.subnet, 5)}:6379/0"
  backends       = [for j in [1, 2] : "${cidrhost(each.value.subnet, 20 + j)}:9000"]
  gslb_endpoints = [for _, ip in local.gslbs : "http://${ip}:9953"]
  state_dir      = local.out
  admin_token    = var.admin_token
}

locals {
  gslb_files = {
    for name, ip in local.gslbs : name => templatefile("${path.module}/gslb.toml.tftpl", {
      name    = name
      ip      = ip
      gslbs   = local.gslbs
      regions = join("\n", [for r, _ in local.regions : module.region[r].gslb_region])
      geo     = join("\n", [for r, _ in local.regions : module.region[r].geo])
      clients = local.clients
    })
  }
}

resource "terraform_data" "secrets" {
  for_each = local.regions
  input    = each.key
  provisioner "local-exec" {
    command = <<-EOT
      set -e
      mkdir -p '${local.out}'
      for kind in cluster-secret report-secret; do
        f='${local.out}/${each.key}.'$kind
        [ -s "$f" ] || od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$f"
      done
    EOT
  }
}

resource "terraform_data" "node" {
  for_each         = { for n in local.node_names : n.name => n.region }
  depends_on       = [terraform_data.secrets]
  triggers_replace = sha256(module.region[each.value].node_configs[each.key])
  provisioner "local-exec" {
    command     = "printf '%s' \"$CONFIG\" > '${local.out}/${each.key}.toml' && '${var.meridian}' validate '${local.out}/${each.key}.toml'"
    environment = { CONFIG = module.region[each.value].node_configs[each.key] }
  }
}

resource "terraform_data" "gslb" {
  for_each         = local.gslb_files
  depends_on       = [terraform_data.secrets]
  triggers_replace = sha256(each.value)
  provisioner "local-exec" {
    command     = "printf '%s' \"$CONFIG\" > '${local.out}/${each.key}.toml' && '${var.meridian}' validate '${local.out}/${each.key}.toml'"
    environment = { CONFIG = each.value }
  }
}

output "files" {
  description = "Every rendered file."
  value       = concat([for n in local.node_names : "${local.out}/${n.name}.toml"], [for g, _ in local.gslbs : "${local.out}/${g}.toml"])
}

output "admin_endpoints" {
  value = { for r, _ in local.regions : r => module.region[r].admin_endpoints }
}
