# terraform test: apply renders and validates every file of the local cluster.
# TF_VAR_meridian names the binary and TF_VAR_out_dir where files go
# (the test suite sets both; by hand the defaults are the debug build and out/).

run "renders_and_validates_every_file" {
  command = apply

  assert {
    condition     = length(output.files) == 8
    error_message = "expected six node files and two balancer files"
  }
  assert {
    condition     = alltrue([for f in output.files : fileexists(f)])
    error_message = "a rendered file is missing"
  }
  assert {
    condition     = output.admin_endpoints["us"][2] == "http://10.81.2.13:9901"
    error_message = "admin endpoints"
  }
}
