output "node_configs" {
  description = "Node file (TOML) of every node, by node name."
  value       = local.node_configs
  sensitive   = true
}

output "gslb_region" {
  description = "The region's [[regions]] table for the DNS balancers' files."
  value = templatefile("${path.module}/templates/gslb-region.toml.tftpl", {
    region    = var.region
    state_dir = var.state_dir
    location  = var.location
    vips      = join(", ", [for v in var.vips : "\"${split("/", v)[0]}\""])
    http_port = var.ports.http
  })
}

output "geo" {
  description = "The geo entry mapping the region's own subnet to its location."
  value       = "[[geo]]\ncidr = \"${var.subnet}\"\nlocation = { lat = ${var.location.lat}, lon = ${var.location.lon} }\n"
}

output "admin_endpoints" {
  description = "Admin API URL of every node (for `meridian ctl`)."
  value       = [for n in var.nodes : "http://${n.address}:${var.ports.admin}"]
}
