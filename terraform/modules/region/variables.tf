variable "region" {
  description = "Region name: 1 to 4 characters of a-z, 0-9 (labels metrics, DNS and Raft)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]{1,4}$", var.region))
    error_message = "region must be 1 to 4 characters of a-z, 0-9."
  }
}

variable "subnet" {
  description = "The region's subnet (CIDR); nodes, VIPs and Redis live in it."
  type        = string
  validation {
    condition     = can(cidrhost(var.subnet, 0))
    error_message = "subnet must be an IPv4 CIDR such as 10.81.1.0/24."
  }
}

variable "nodes" {
  description = "Gateway nodes: Raft id (1-based, unique) and address (in the subnet). The first bootstraps the region."
  type = list(object({
    id      = number
    address = string
  }))
  validation {
    condition     = length(var.nodes) >= 1 && length(var.nodes) <= 9
    error_message = "a region has 1 to 9 nodes (3 or 5 survive the loss of one or two)."
  }
  validation {
    condition     = length(distinct([for n in var.nodes : n.id])) == length(var.nodes) && alltrue([for n in var.nodes : n.id >= 1])
    error_message = "node ids must be unique and at least 1."
  }
  validation {
    condition     = alltrue([for n in var.nodes : can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+$", n.address))])
    error_message = "node addresses must be IPv4 addresses (no port)."
  }
}

variable "vips" {
  description = "Virtual IPs with prefix (e.g. 10.81.1.101/24); VIP i prefers node i."
  type        = list(string)
  validation {
    condition     = alltrue([for v in var.vips : can(cidrhost(v, 0)) && strcontains(v, "/")])
    error_message = "every VIP must be an address with its prefix, e.g. 10.81.1.101/24."
  }
}

variable "vip_backend" {
  description = "How VIPs are moved: netlink (the address on the interface + gratuitous ARP), exec (an operator's command), none."
  type        = string
  default     = "netlink"
  validation {
    condition     = contains(["netlink", "exec", "none"], var.vip_backend)
    error_message = "vip_backend must be netlink, exec or none."
  }
}

variable "interface" {
  description = "Interface VIPs are added to."
  type        = string
  default     = "eth0"
}

variable "redis_url" {
  description = "The region's Redis (redis:// or rediss://)."
  type        = string
  validation {
    condition     = can(regex("^rediss?://", var.redis_url))
    error_message = "redis_url must start with redis:// or rediss://."
  }
}

variable "gslb_endpoints" {
  description = "Report API base URLs of every DNS balancer (e.g. http://10.81.0.51:9953)."
  type        = list(string)
  validation {
    condition     = length(var.gslb_endpoints) >= 1 && alltrue([for e in var.gslb_endpoints : can(regex("^https?://", e))])
    error_message = "at least one balancer endpoint, each an http:// or https:// URL."
  }
}

variable "location" {
  description = "Where the region is (the balancers steer clients to the nearest healthy region)."
  type = object({
    lat = number
    lon = number
  })
  validation {
    condition     = abs(var.location.lat) <= 90 && abs(var.location.lon) <= 180
    error_message = "location must have -90 <= lat <= 90 and -180 <= lon <= 180."
  }
}

variable "backends" {
  description = "Backend addresses (host:port) of the sample upstream."
  type        = list(string)
  validation {
    condition     = length(var.backends) >= 1 && alltrue([for b in var.backends : can(regex("^[^:]+:\\d+$", b))])
    error_message = "at least one backend, each host:port."
  }
}

variable "state_dir" {
  description = "Folder holding each node's data directory and the region's secret files."
  type        = string
}

variable "admin_token" {
  description = "Bearer token of the admin API (at least 16 characters)."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.admin_token) >= 16
    error_message = "admin_token must have at least 16 characters."
  }
}

variable "ports" {
  description = "Ports every node uses."
  type = object({
    http  = number
    admin = number
    raft  = number
  })
  default = { http = 8080, admin = 9901, raft = 7100 }
}

variable "bind_all" {
  description = "Listeners bind 0.0.0.0 (a host per node); false binds each node's own address (nodes sharing a host)."
  type        = bool
  default     = true
}

variable "identity_pepper_file" {
  description = "Path, on the nodes, of the API-key pepper shared by every region (empty: no [identity] section; documents with API keys are then refused)."
  type        = string
  default     = ""
}
