# A meridian region: the node file of every gateway node, and the region's
# entry for the DNS balancers' files. Nothing is created here; callers hand
# the rendered files to whatever starts the nodes.

locals {
  vips_ok      = alltrue([for v in var.vips : cidrhost(var.subnet, 0) == cidrhost("${split("/", v)[0]}/${split("/", var.subnet)[1]}", 0)])
  bootstrap_id = min([for n in var.nodes : n.id]...)
  members      = join(", ", [for n in var.nodes : "{ id = ${n.id}, address = \"${n.address}:${var.ports.raft}\" }"])

  node_configs = {
    for n in var.nodes : "${var.region}-n${n.id}" => templatefile("${path.module}/templates/node.toml.tftpl", {
      region               = var.region
      id                   = n.id
      address              = n.address
      bind                 = var.bind_all ? "0.0.0.0" : n.address
      bootstrap            = n.id == local.bootstrap_id
      members              = local.members
      ports                = var.ports
      state_dir            = var.state_dir
      vip_backend          = var.vip_backend
      interface            = var.interface
      vips                 = var.vips
      redis_url            = var.redis_url
      reports              = join(", ", [for e in var.gslb_endpoints : "\"${e}\""])
      backends             = join(", ", [for b in var.backends : "{ address = \"${b}\" }"])
      token                = var.admin_token
      identity_pepper_file = var.identity_pepper_file
    })
  }
}

resource "terraform_data" "checks" {
  input = var.region
  lifecycle {
    precondition {
      condition     = local.vips_ok
      error_message = "every VIP must lie in the region's subnet ${var.subnet}."
    }
    precondition {
      condition     = alltrue([for n in var.nodes : cidrhost(var.subnet, 0) == cidrhost("${n.address}/${split("/", var.subnet)[1]}", 0)])
      error_message = "every node address must lie in the region's subnet ${var.subnet}."
    }
  }
}
