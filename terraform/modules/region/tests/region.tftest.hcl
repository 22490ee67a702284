# terraform test: the rendered files and the input checks of the module.

variables {
  region         = "eu"
  subnet         = "10.81.1.0/24"
  nodes          = [{ id = 1, address = "10.81.1.11" }, { id = 2, address = "10.81.1.12" }, { id = 3, address = "10.81.1.13" }]
  vips           = ["10.81.1.101/24", "10.81.1.102/24", "10.81.1.103/24"]
  redis_url      = "redis://10.81.1.5:6379/0"
  gslb_endpoints = ["http://10.81.0.51:9953", "http://10.81.0.52:9953"]
  location       = { lat = 50.1, lon = 8.7 }
  backends       = ["10.81.1.21:9000", "10.81.1.22:9000"]
  state_dir      = "/var/lib/meridian"
  admin_token    = "0123456789abcdef0123"
}

run "renders_one_node_file_per_node" {
  command = plan

  assert {
    condition     = length(output.node_configs) == 3
    error_message = "expected one node file per node"
  }
  assert {
    condition     = strcontains(output.node_configs["eu-n1"], "bootstrap = true") && strcontains(output.node_configs["eu-n2"], "bootstrap = false")
    error_message = "exactly the first node bootstraps the region"
  }
  assert {
    condition     = strcontains(output.node_configs["eu-n3"], "listen = \"10.81.1.13:7100\"") && strcontains(output.node_configs["eu-n3"], "{ id = 2, address = \"10.81.1.12:7100\" }")
    error_message = "the Raft address and the member list are wrong"
  }
  assert {
    condition     = strcontains(output.node_configs["eu-n2"], "address = \"10.81.1.102/24\"\npreferred = 2")
    error_message = "VIP i must prefer node i"
  }
  assert {
    condition     = strcontains(output.gslb_region, "vips = [\"10.81.1.101\", \"10.81.1.102\", \"10.81.1.103\"]")
    error_message = "the balancers' region entry must list the VIPs without prefix"
  }
  assert {
    condition     = output.admin_endpoints[0] == "http://10.81.1.11:9901"
    error_message = "admin endpoints"
  }
}

run "own_addresses_when_nodes_share_a_host" {
  command = plan
  variables {
    bind_all    = false
    vip_backend = "none"
  }
  assert {
    condition     = strcontains(output.node_configs["eu-n2"], "address = \"10.81.1.12:8080\"") && strcontains(output.node_configs["eu-n2"], "backend = \"none\"")
    error_message = "bind_all = false must bind each node's own address"
  }
}

run "refuses_a_bad_region_name" {
  command = plan
  variables {
    region = "Europe-West"
  }
  expect_failures = [var.region]
}

run "refuses_duplicate_node_ids" {
  command = plan
  variables {
    nodes = [{ id = 1, address = "10.81.1.11" }, { id = 1, address = "10.81.1.12" }]
  }
  expect_failures = [var.nodes]
}

run "refuses_a_vip_without_prefix" {
  command = plan
  variables {
    vips = ["10.81.1.101"]
  }
  expect_failures = [var.vips]
}

run "refuses_a_vip_outside_the_subnet" {
  command = plan
  variables {
    vips = ["10.81.9.101/24"]
  }
  expect_failures = [terraform_data.checks]
}

run "refuses_an_unknown_vip_backend_and_a_short_token" {
  command = plan
  variables {
    vip_backend = "vrrp"
    admin_token = "short"
  }
  expect_failures = [var.vip_backend, var.admin_token]
}

run "names_the_identity_pepper_when_given" {
  command = plan

  variables {
    identity_pepper_file = "/etc/meridian/identity-pepper"
  }

  assert {
    condition     = alltrue([for n, c in output.node_configs : strcontains(c, "[identity]\npepper_file = \"/etc/meridian/identity-pepper\"")])
    error_message = "every node must name the shared pepper"
  }
}

run "has_no_identity_section_without_a_pepper" {
  command = plan

  assert {
    condition     = !strcontains(output.node_configs["eu-n1"], "[identity]")
    error_message = "no pepper, no [identity] section"
  }
}
