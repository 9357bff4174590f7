"""A pull through Debian's nginx (a production static server): Range resume included."""

import os
import shutil
import socket
import subprocess
import time

import pytest
from deltakit import BRANCH, Host, fsck_ok, make_device

from updater import httpfetch, pull
from updater.objects import to_hex

NOW = 1_700_000_500
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def nginx(tmp_path):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (.ci/setup installs nginx-light)")
    host = Host(tmp_path / "host")
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (conf_dir / "nginx.conf").write_text(CONF.format(tmp=conf_dir, port=port, root=host.repo.path, user=user))
    proc = subprocess.Popen([NGINX, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = "http://127.0.0.1:%d" % port
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("nginx did not start: %s" % proc.stderr.read().decode())
            time.sleep(0.05)
    yield host, url, conf_dir
    proc.terminate()
    proc.wait(10)


def test_pull_through_nginx_with_range_resume(tmp_path, nginx):
    host, url, conf_dir = nginx
    host.commit("1")
    host.delta("1")
    host.publish(now=NOW)
    dev = make_device(tmp_path, url, host.pub)
    r = pull.pull(dev, now=NOW + 1)
    assert r["delta_used"] and r["commit"] == to_hex(host.commits["1"])
    host.big = 1 << 20
    host.commit("2")
    host.delta("2", "1")
    host.publish(now=NOW + 2)
    d = host.delta_dir("2", "1")
    size = os.path.getsize(os.path.join(d, "0"))

    class Stop(Exception):
        pass

    def cut(done, total):
        if total and done > size // 2:
            raise Stop()

    f = httpfetch.HttpFetcher(url)
    with pytest.raises(Stop):
        pull.pull(dev, progress=cut, fetcher=f, now=NOW + 3)
    r = pull.pull(dev, now=NOW + 3)
    assert r["delta_used"] and r["bytes_resumed"] > size // 3
    assert dev.repo().read_ref(BRANCH) == host.commits["2"]
    fsck_ok(dev)
    log = (conf_dir / "access.log").read_text()
    assert " 206 " in log  # nginx answered the resumed part with a partial response
    # 404 from nginx is a clean FetchError, and the object fallback works through nginx too
    host.commit("3")
    host.publish(now=NOW + 4)
    r = pull.pull(dev, now=NOW + 5)
    assert not r["delta_used"] and r["objects_fetched"] > 0
    fsck_ok(dev)
