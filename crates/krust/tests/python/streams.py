"""exec and port-forward through the official Python client (kubernetes on PyPI),
which speaks the v4.channel.k8s.io WebSocket for exec and the portforward.k8s.io
WebSocket (ports in the query) for port-forward. Usage: streams.py POD PORT."""

import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward, stream

pod, port = sys.argv[1], int(sys.argv[2])
config.load_kube_config()
v1 = client.CoreV1Api()

out = stream(
    v1.connect_get_namespaced_pod_exec, pod, "default",
    command=["sh", "-c", "echo from python"], stderr=True, stdin=False, stdout=True, tty=False,
)
assert out == "from python\n", repr(out)

session = stream(
    v1.connect_get_namespaced_pod_exec, pod, "default",
    command=["sh", "-c", "read line; echo got $line; exit 7"],
    stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False,
)
session.write_stdin("typed\n")
got = ""
deadline = time.time() + 20
while session.is_open() and time.time() < deadline:
    session.update(timeout=1)
    got += session.read_stdout()
session.close()
assert got == "got typed\n", repr(got)
assert session.returncode == 7, session.returncode

forward = portforward(v1.connect_get_namespaced_pod_portforward, pod, "default", ports=str(port))
sock = forward.socket(port)
sock.setblocking(True)
sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
answer = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    answer += chunk
sock.close()
assert b"hello from the pod" in answer, answer
print("python client ok")
