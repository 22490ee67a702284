# Shared by the benchmark scripts (sourced, not run).

# nginx as the reference proxy: one process in the foreground, keep-alive
# pool to the upstream on 127.0.0.1:9001, listening on 127.0.0.1:8080, no
# access log; its files under $1. Writes $1/nginx.conf.
write_nginx_conf() {
  local work="$1"
  cat > "$work/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf;
    uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:9001; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:8080; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
}

# The instructions callgrind counted in the dumps $1.* (program totals).
callgrind_total() {
  callgrind_annotate "$1".* 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",","",$1); print $1; seen=1}'
}
