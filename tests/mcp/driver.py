"""Drive `rclaude mcp` with the official MCP Python SDK's client over stdio.

argv[1]: JSON {"command", "args", "cwd", "env"} of the server to start.
stdin: one JSON request per line: {"op": "list_tools"} or {"op": "call", "tool", "args"}.
stdout: one JSON answer per line: {"initialized": ...} first, then {"tools": [...]},
{"result": CallToolResult} or {"error": {"code", "message"}} (an MCP error).
"""

import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main():
    params = StdioServerParameters(**json.loads(sys.argv[1]))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            emit({"initialized": dump(init)})
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    break
                req = json.loads(line)
                try:
                    if req["op"] == "list_tools":
                        tools = await session.list_tools()
                        emit({"tools": [dump(t) for t in tools.tools]})
                    elif req["op"] == "call":
                        result = await session.call_tool(req["tool"], req.get("args"))
                        emit({"result": dump(result)})
                    else:
                        emit({"error": {"code": 0, "message": f"driver: unknown op {req['op']}"}})
                except MCPError as e:
                    emit({"error": {"code": e.code, "message": e.error.message}})


anyio.run(main)
