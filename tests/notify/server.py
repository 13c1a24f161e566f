"""A desktop notification server on a private D-Bus session bus, for tests.

Owns org.freedesktop.Notifications (the name `notify-send` talks to) and appends each
notification it is sent to a file as one JSON line. Prints "ready" once it owns the name.
Usage: python server.py OUT_FILE   (DBUS_SESSION_BUS_ADDRESS names the bus)
"""

import json
import sys

from jeepney import MessageType, HeaderFields, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"


def main():
    out = open(sys.argv[1], "a", encoding="utf-8")
    conn = open_dbus_connection(bus="SESSION")
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4))
    if reply.body[0] != 1:
        sys.exit(f"could not own {NAME}: {reply.body}")
    print("ready", flush=True)
    next_id = 1
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "Notify":
            app, _replaces, _icon, summary, body, _actions, _hints, _timeout = msg.body
            out.write(json.dumps({"app": app, "summary": summary, "body": body}) + "\n")
            out.flush()
            conn.send(new_method_return(msg, "u", (next_id,)))
            next_id += 1
        elif member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("rclaude-test", "rclaude", "1", "1.2")))
        elif member == "GetCapabilities":
            conn.send(new_method_return(msg, "as", (["body"],)))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", (str(member),)))


if __name__ == "__main__":
    main()
