#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the golden vectors
(protocol/tests/codec_golden.rs, shared/observed-frames.md) and, for the
websocket target, a few hand-made server frame streams. Run from fuzz/:
`python3 seeds/generate.py`. Deterministic: same files every time."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def T(s): return ("t", s.encode())
def B(b): return ("b", bytes(b))

def frames(small, *fs):
    out = bytearray([1 if small else 0])
    for kind, data in fs:
        out.append(0 if kind == "t" else 1)
        out += struct.pack("<H", len(data))
        out += data
    return bytes(out)

RID = "569ca857-40ae-4b57-8ed8-61bc3c45a433"
decoder = {
    "open": frames(False, T('0{"sid":"-O0JMYpMkMHdkVevAAAQ","upgrades":[],"pingInterval":500,"pingTimeout":400,"maxPayload":1000000}')),
    "connect-auth": frames(False, T('40/daemon,{"teamClusterId":"c-main","daemonPassword":"pw-main","installedVersion":"1.4.2","client":"ref-daemon/0.1.0"}')),
    "connect-sid": frames(False, T('40/daemon,{"sid":"kOcoj4zjy49uNmddAAAG"}')),
    "ping-pong": frames(False, T("2"), T("3"), T("2probe"), T("3probe"), T("6"), T("1"), T("5")),
    "command": frames(False, T('42/daemon,["command",{"requestId":"r1","command":"echo","payload":{"a":1,"b":[1,2,{"c":null}]}}]')),
    "command-response": frames(False, T('42/daemon,["command-response",{"requestId":"r1","ok":true,"data":{"a":1}}]'),
                               T('42/daemon,["command-response",{"requestId":"r2","ok":false,"error":{"code":"NOT_FOUND","message":"no such volume"}}]')),
    "reverse-command": frames(False, T('42/daemon,["reverse-command",{"requestId":"r3","command":"blob","payload":{"size":10}}]')),
    "reverse-response-data": frames(False, T('42/daemon,["reverse-response",{"requestId":"r4","command":"list-files","status":200,"headers":{},"data":[1,"two"]}]')),
    "reverse-response-body": frames(False, T('451-/daemon,["reverse-response",{"requestId":"r5","command":"blob","status":200,"headers":{},"body":{"_placeholder":true,"num":0}}]'), B(range(10))),
    "stream": frames(False,
        T('42/daemon,["reverse-response",{"requestId":"%s","command":"chunks","status":200,"headers":{},"stream":true}]' % RID),
        T('451-/daemon,["reverse-stream",{"requestId":"%s","seq":0,"chunk":{"_placeholder":true,"num":0}}]' % RID), B([0, 1, 2]),
        T('451-/daemon,["reverse-stream",{"requestId":"%s","seq":1,"chunk":{"_placeholder":true,"num":0}}]' % RID), B([3, 4, 5]),
        T('42/daemon,["reverse-stream-end",{"requestId":"%s","chunks":2}]' % RID),
        T('42/daemon,["reverse-stream-end",{"requestId":"x","chunks":2,"error":{"code":"HANDLER_ERROR","message":"read error after 2 chunks"}}]')),
    "reply-404": frames(False, T('42/daemon,["reverse-response",{"requestId":"r6","command":"no-such-handler","status":404,"headers":{},"error":{"code":"UNKNOWN_COMMAND","message":"no handler"}}]')),
    "messages": frames(False, T('42/daemon,["message",{"type":"session-input","sessionId":"s1","chunkBase64":"aGk=","extraField":42}]'),
                       T('42/daemon,["message",{"type":"tunnel-state","tunnelId":"t1","state":"open"}]')),
    "connect-error": frames(False, T('44/daemon,{"message":"invalid credentials","data":{"code":"INVALID_CREDENTIALS"}}'), T('44/x,{"message":"Invalid namespace"}'), T("41/daemon,")),
    "socketio-doc": frames(False, T("40"), T('40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'), T("41/admin,"), T('42["hello",1]'),
                           T('42/admin,456["project:delete",123]'), T("43/admin,456[]"), T('44{"message":"Not authorized"}'),
                           T('451-["hello",{"_placeholder":true,"num":0}]'), B([1, 2, 3]),
                           T('461-/admin,456[{"_placeholder":true,"num":0}]'), B([1, 2, 3])),
    "small-limits-three-attachments": frames(True, T('453-/d,["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]'), B([1]), T("2"), B([2])),
}

envelope = {  # selector byte = index into NAMES (+ attachments << 3), then the argument
    "command": (0, {"requestId": "r1", "command": "echo", "payload": {"a": 1}}),
    "command-response": (1, {"requestId": "r1", "ok": False, "error": {"code": "NOT_FOUND", "message": "m"}}),
    "reverse-command": (2, {"requestId": "r3", "command": "list-files"}),
    "reverse-response-data": (3, {"requestId": "r4", "command": "c", "status": 200, "headers": {}, "data": [1, "two"]}),
    "reverse-response-stream": (3, {"requestId": "r4", "command": "c", "status": 200, "headers": {}, "stream": True}),
    "reverse-response-body": (3 | (1 << 3), {"requestId": "r5", "command": "blob", "status": 200, "headers": {}, "body": {"_placeholder": True, "num": 0}}),
    "reverse-stream": (4 | (1 << 3), {"requestId": "r", "seq": 0, "chunk": {"_placeholder": True, "num": 0}}),
    "reverse-stream-end": (5, {"requestId": "r", "chunks": 2, "error": {"code": "HANDLER_ERROR", "message": "m"}}),
    "message": (6, {"type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=", "extraField": 42}),
}

messages = {
    "session-open": {"type": "session-open", "sessionId": "s", "cols": 80, "rows": 24, "command": "bash"},
    "session-input": {"type": "session-input", "sessionId": "s1", "chunkBase64": "aGk=", "extraField": 42},
    "session-data": {"type": "session-data", "sessionId": "s", "chunkBase64": "aGk="},
    "session-resize": {"type": "session-resize", "sessionId": "s", "cols": 100, "rows": 40},
    "session-close": {"type": "session-close", "sessionId": "s", "reason": "exit"},
    "tunnel-open": {"type": "tunnel-open", "tunnelId": "t", "host": "127.0.0.1", "port": 8080},
    "tunnel-data": {"type": "tunnel-data", "tunnelId": "t", "chunkBase64": "AAE="},
    "tunnel-state": {"type": "tunnel-state", "tunnelId": "t1", "state": "open"},
    "tunnel-close": {"type": "tunnel-close", "tunnelId": "t"},
    "exposure-snapshot": {"type": "exposure-snapshot", "exposures": [{"port": 80}]},
    "unknown": {"type": "brand-new", "x": 1},
}

def ws(fin, opcode, payload):
    """One unmasked (server) WebSocket frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n <= 0xFFFF:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload

# flags (bit 0: small limit), read-size seed, take_text_if pattern, stream
websocket = {
    "texts": bytes([0, 7, 0x55]) + ws(True, 1, b"2") + ws(True, 1, b'42/daemon,["command",{}]') + ws(True, 2, bytes(range(5))),
    "fragments-and-control": bytes([0, 3, 0xFF]) + ws(False, 1, b"42[\"frag") + ws(True, 9, b"hi") + ws(False, 0, b"men")
        + ws(True, 10, b"") + ws(True, 0, b"ted\"]") + ws(True, 8, bytes([3, 232])),
    "lengths": bytes([0, 200, 0x0F]) + ws(True, 2, b"") + ws(True, 2, bytes(125)) + ws(True, 2, bytes(126)) + ws(True, 1, b"x" * 300),
    "small-limit-too-large": bytes([1, 1, 0]) + ws(False, 2, bytes(200)) + ws(True, 0, bytes(200)),
    "bad-utf8": bytes([0, 9, 1]) + ws(True, 1, b"ok") + ws(True, 1, bytes([0xFF, 0xFE])),
}

def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def dumps(v): return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

for name, data in websocket.items():
    write("websocket", name, data)
for name, data in decoder.items():
    write("decoder", name, data)
for name, (sel, arg) in envelope.items():
    data = bytes([sel]) + dumps(arg)
    if sel >> 3:
        data += bytes([0, 1, 2, 3])  # the attachment, cut from the end
    write("envelope", name, data)
for name, v in messages.items():
    write("message", name, dumps(v))
