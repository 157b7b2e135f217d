#!/usr/bin/env python3
"""Server CPU (user+system, from /proc) for plain subscribes to a room whose
history is full: what a subscribe flood costs the shard that orders the room.

  benches/subscribe_cpu.py BINARY HISTORY_SIZE CONNS PER_CONN

Starts BINARY (SHARDS=2, a free loopback port), publishes HISTORY_SIZE
events to `orders`, opens CONNS admin connections, and has each send
PER_CONN subscribes to `orders` in one write (PER_CONN <= 200, the flood
burst); prints one JSON line. Loopback only; every wait is bounded.
"""
import socket, subprocess, sys, time, os, json, http.client
BIN=sys.argv[1]; HIST=int(sys.argv[2]); CONNS=int(sys.argv[3]); PER=int(sys.argv[4])
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
port=free_port()
env=dict(os.environ, JWT_SECRET="s", PORT=str(port), SHARDS="2", BIND_ADDR="127.0.0.1", RUST_LOG="error", HISTORY_SIZE=str(HIST))
srv=subprocess.Popen([BIN], env=env, stderr=subprocess.DEVNULL)
tok=subprocess.check_output([BIN,"token","--user-id","1","--role","admin"],env=env).decode().strip()
tick=os.sysconf("SC_CLK_TCK")
def cpu():
    f=open(f"/proc/{srv.pid}/stat").read().rsplit(")",1)[1].split()
    return (int(f[11])+int(f[12]))/tick
deadline=time.time()+10
while time.time()<deadline:
    try: socket.create_connection(("127.0.0.1",port),0.2).close(); break
    except OSError: time.sleep(0.05)
c=http.client.HTTPConnection("127.0.0.1",port)
body=json.dumps({"room":"orders","type":"t","payload":{"x":"y"*100}})
for i in range(HIST):
    c.request("POST","/api/notifications/broadcast",body,{"content-type":"application/json"}); r=c.getresponse(); r.read(); assert r.status==202
def frame(text):
    d=text.encode(); m=b"\x01\x02\x03\x04"; n=len(d)
    h=bytes([0x81]) + (bytes([0x80|n]) if n<126 else bytes([0x80|126])+n.to_bytes(2,"big"))
    return h+m+bytes(b^m[i%4] for i,b in enumerate(d))
socks=[]
for i in range(CONNS):
    s=socket.create_connection(("127.0.0.1",port))
    s.sendall((f"GET /ws?token={tok} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf=b""
    while b'"connected"' not in buf: buf+=s.recv(65536)
    socks.append(s)
sub=frame(json.dumps({"type":"subscribe","room":"orders"}))*PER
before=cpu(); t0=time.time()
for s in socks: s.sendall(sub)
for s in socks:
    s.settimeout(10); buf=b""
    while buf.count(b'"subscribed"')<PER: buf+=s.recv(65536)
after=cpu()
print(json.dumps({"bin":BIN,"history_size":HIST,"subscribes":CONNS*PER,"server_cpu_s":round(after-before,3),"wall_s":round(time.time()-t0,3)}))
for s in socks: s.close()
srv.terminate(); srv.wait(5)
