"""Drive `rclaude agent` with E2B's own Python SDK in debug mode (http://localhost:49983).

Run by tests/e2b_sdk.rs with ROOT set to the agent's sandbox root. Prints one line per check
and exits non-zero on the first failure.
"""
import os
import sys
import time

os.environ["E2B_DEBUG"] = "true"
os.environ.setdefault("E2B_API_KEY", "e2b_" + "0" * 40)  # never used in debug mode

import io  # noqa: E402

from e2b import PtySize, Sandbox  # noqa: E402
from e2b.exceptions import NotFoundException  # noqa: E402
from e2b.sandbox.commands.command_handle import CommandExitException  # noqa: E402

ROOT = os.environ["ROOT"]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {name}", flush=True)


sbx = Sandbox.create(debug=True)
check("is_running", sbx.is_running())

r = sbx.commands.run("echo hello; echo oops >&2")
check("run stdout", r.stdout == "hello\n", repr(r.stdout))
check("run stderr", r.stderr == "oops\n", repr(r.stderr))
check("run exit code", r.exit_code == 0, r.exit_code)

r = sbx.commands.run("pwd; echo $E2B_SANDBOX $FOO", envs={"FOO": "bar"})
check("run env", r.stdout.endswith("true bar\n"), repr(r.stdout))

try:
    sbx.commands.run("echo partial; exit 3")
    check("non-zero exit raises", False, "no exception")
except CommandExitException as e:
    check("non-zero exit raises", e.exit_code == 3 and e.stdout == "partial\n", f"{e.exit_code} {e.stdout!r}")

chunks = []
r = sbx.commands.run("for i in 1 2 3; do echo line$i; done", on_stdout=lambda s: chunks.append(s))
check("on_stdout callback", "".join(chunks) == "line1\nline2\nline3\n", repr(chunks))

info = sbx.files.write(ROOT + "/one.txt", "first file")
check("files.write one", info.path == ROOT + "/one.txt" and info.name == "one.txt", repr(info))
infos = sbx.files.write_files([
    {"path": ROOT + "/multi/a.txt", "data": "A"},
    {"path": ROOT + "/multi/b.bin", "data": b"\x00\x01\x02"},
])
check("files.write many", sorted(i.name for i in infos) == ["a.txt", "b.bin"], repr(infos))
check("files.read text", sbx.files.read(ROOT + "/one.txt") == "first file")
check("files.read bytes", bytes(sbx.files.read(ROOT + "/multi/b.bin", format="bytes")) == b"\x00\x01\x02")
check("files.exists yes", sbx.files.exists(ROOT + "/multi/a.txt"))
check("files.exists no", not sbx.files.exists(ROOT + "/nope"))
listed = sorted(e.name for e in sbx.files.list(ROOT + "/multi"))
check("files.list", listed == ["a.txt", "b.bin"], repr(listed))
info = sbx.files.get_info(ROOT + "/one.txt")
check("files.get_info", info.size == len("first file") and info.type.value == "file", repr(info))
check("files.make_dir new", sbx.files.make_dir(ROOT + "/newdir/deeper") is True)
check("files.make_dir existing", sbx.files.make_dir(ROOT + "/newdir/deeper") is False)
moved = sbx.files.rename(ROOT + "/one.txt", ROOT + "/newdir/one-renamed.txt")
check("files.rename", moved.path == ROOT + "/newdir/one-renamed.txt", repr(moved))
check("files.rename result", sbx.files.read(ROOT + "/newdir/one-renamed.txt") == "first file")
sbx.files.remove(ROOT + "/multi")
check("files.remove", not sbx.files.exists(ROOT + "/multi"))
try:
    sbx.files.read(ROOT + "/multi/a.txt")
    check("files.read missing raises", False, "no exception")
except NotFoundException:
    check("files.read missing raises", True)
r = sbx.commands.run("cat newdir/one-renamed.txt", cwd=ROOT)
check("files visible to processes", r.stdout == "first file", repr(r.stdout))

h = sbx.commands.run("echo started; sleep 60", background=True)
time.sleep(0.5)
pids = [p.pid for p in sbx.commands.list()]
check("background listed", h.pid in pids, f"{h.pid} not in {pids}")
check("background kill", h.kill() is True)
try:
    res = h.wait()
    check("killed command ends", False, f"no exception: {res}")
except CommandExitException as e:
    check("killed command ends", e.exit_code == -1 and "killed" in (e.error or ""), f"{e.exit_code} {e.error!r}")
check("kill unknown pid", sbx.commands.kill(999999) is False)

try:
    sbx.commands.run("sleep 30", timeout=1)
    check("command timeout", False, "no exception")
except Exception as e:  # the SDK raises TimeoutException
    check("command timeout", "imeout" in type(e).__name__ or "imeout" in str(e), repr(e))

# Streamed (octet-stream) upload and streamed download.
payload = bytes(range(256)) * 4096  # 1 MiB
sbx.files.write(ROOT + "/streamed.bin", io.BytesIO(payload))
got = b"".join(sbx.files.read(ROOT + "/streamed.bin", format="stream"))
check("octet-stream upload + streamed read", got == payload, f"{len(got)} bytes")

# stdin: SendInput, StreamInput (client streaming) and CloseStdin.
h = sbx.commands.run("cat", background=True, stdin=True)
sbx.commands.send_stdin(h.pid, "one ")
sbx.commands.stream_input(h.pid, [b"two ", "three"])
sbx.commands.close_stdin(h.pid)
res = h.wait()
check("stdin send/stream/close", res.stdout == "one two three", repr(res.stdout))

# Re-attach to a running command by pid.
h = sbx.commands.run("sleep 0.5; echo after-reconnect", background=True)
h.disconnect()
h2 = sbx.commands.connect(h.pid)
res = h2.wait()
check("commands.connect", res.stdout == "after-reconnect\n", repr(res.stdout))

# PTY: interactive bash, input, resize, exit.
out = []
pty = sbx.pty.create(PtySize(rows=24, cols=80))
sbx.pty.resize(pty.pid, PtySize(rows=30, cols=100))
sbx.pty.send_stdin(pty.pid, b"stty size; echo pty-$((40+2)); exit\n")
res = pty.wait(on_pty=lambda d: out.append(bytes(d)))
text = b"".join(out).decode(errors="replace")
check("pty output", "pty-42" in text and "30 100" in text, repr(text[-300:]))
check("pty exit", res.exit_code == 0, res.exit_code)

# Directory watching, polled (the sync SDK: CreateWatcher / GetWatcherEvents / RemoveWatcher).
sbx.files.make_dir(ROOT + "/watched/sub")
w = sbx.files.watch_dir(ROOT + "/watched", recursive=True)
sbx.files.write(ROOT + "/watched/new.txt", "x")
sbx.files.write(ROOT + "/watched/sub/deep.txt", "y")
sbx.commands.run("rm watched/new.txt", cwd=ROOT)
seen = []
deadline = time.time() + 10
while time.time() < deadline:
    seen += [(e.name, e.type.name) for e in w.get_new_events()]
    if ("new.txt", "REMOVE") in seen and any(n == "sub/deep.txt" for n, _ in seen):
        break
    time.sleep(0.1)
check("watch_dir create", ("new.txt", "CREATE") in seen, repr(seen))
check("watch_dir write", ("new.txt", "WRITE") in seen, repr(seen))
check("watch_dir remove", ("new.txt", "REMOVE") in seen, repr(seen))
check("watch_dir recursive", any(n == "sub/deep.txt" for n, _ in seen), repr(seen))
w.stop()
try:
    w.get_new_events()
    check("stopped watcher refuses", False, "no exception")
except Exception as e:
    check("stopped watcher refuses", True)
try:
    sbx.files.watch_dir(ROOT + "/no-such-dir")
    check("watch missing dir raises NotFound", False, "no exception")
except NotFoundException:
    check("watch missing dir raises NotFound", True)

# Directory watching, streamed (the async SDK: WatchDir), errors typed from inside the stream.
import asyncio  # noqa: E402

from e2b import AsyncSandbox  # noqa: E402


async def streamed():
    asbx = await AsyncSandbox.create(debug=True)
    events = []
    handle = await asbx.files.watch_dir(
        ROOT + "/watched", on_event=lambda e: events.append((e.name, e.type.name))
    )
    await asbx.files.write(ROOT + "/watched/streamed.txt", "z")
    for _ in range(100):
        if ("streamed.txt", "CREATE") in events:
            break
        await asyncio.sleep(0.1)
    check("async watch_dir event", ("streamed.txt", "CREATE") in events, repr(events))
    deep = [n for n, _ in events if "/" in n]
    check("async watch_dir not recursive by default", deep == [], repr(deep))
    await handle.stop()
    try:
        await asbx.files.watch_dir(ROOT + "/no-such-dir", on_event=lambda e: None)
        check("async watch missing dir raises NotFound", False, "no exception")
    except NotFoundException:
        check("async watch missing dir raises NotFound", True)
    try:
        await asbx.files.watch_dir("/etc/../../outside", on_event=lambda e: None)
        check("async watch outside root raises", False, "no exception")
    except Exception as e:
        check("async watch outside root raises typed", "InvalidArgument" in type(e).__name__ or "invalid" in str(e).lower(), repr(e))


asyncio.run(streamed())

print("ALL OK", flush=True)
# Every check has run. Leave without interpreter finalization: the SDK's watch threads, still
# parked in native code, now and then abort the interpreter at shutdown (SIGABRT after "ALL OK",
# nothing on stderr), which says nothing about the agent under test.
sys.stdout.flush()
os._exit(0)
