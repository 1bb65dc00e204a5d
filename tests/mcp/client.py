"""Drives Ratchet's MCP server with the official Python SDK, as an agent's host would.

The end-to-end tests (tests/tests/e2e/mcp.rs) run this with the SDK's 2.x line (the current
protocol) and its 1.x line (the previous one), over stdio or streamable HTTP, and assert on
the one JSON document it prints on stdout. It asserts nothing itself: what a client sees is
reported as it is, errors included.

    python client.py stdio  RATCHET_BINARY ARGS... -- STEP [STEP...]
    python client.py http   URL [--key KEY]        -- STEP [STEP...]

Steps, run in order in one session:
    list                          the tools, with their schemas
    call:TOOL:JSON                a call and its result
    progress:TOOL:JSON            a call with a progress callback; the progress messages too
    abandon:TOOL:JSON:SECONDS     a call given up after SECONDS (the client cancels it)
    sleep:SECONDS                 waits
    read:URI                      a resource's contents
    resources                     the resource templates
    wait-changed:SECONDS          waits for notifications/tools/list_changed (touching the
                                  file named by $RATCHET_TOUCH first, when set)
"""

import asyncio
import json
import os
import sys
import time

import mcp
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

MAJOR = int(mcp.__version__.split(".")[0]) if hasattr(mcp, "__version__") else None
if MAJOR is None:
    from importlib.metadata import version

    MAJOR = int(version("mcp").split(".")[0])


def field(obj, snake, camel):
    """The SDK's 2.x names fields in snake_case, 1.x as on the wire."""
    if hasattr(obj, snake):
        return getattr(obj, snake)
    return getattr(obj, camel, None)


def result_json(result):
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return {
        "is_error": bool(field(result, "is_error", "isError")),
        "structured": field(result, "structured_content", "structuredContent"),
        "text": texts[0] if texts else None,
    }


async def run_steps(session, steps, changed):
    out = []
    for step in steps:
        kind, _, rest = step.partition(":")
        try:
            if kind == "list":
                listed = await session.list_tools()
                out.append(
                    {
                        "step": kind,
                        "tools": [
                            {
                                "name": t.name,
                                "description": t.description,
                                "input_schema": field(t, "input_schema", "inputSchema"),
                                "output_schema": field(t, "output_schema", "outputSchema"),
                            }
                            for t in listed.tools
                        ],
                    }
                )
            elif kind in ("call", "progress"):
                tool, _, args = rest.partition(":")
                seen = []

                async def on_progress(progress, total, message):
                    seen.append({"progress": progress, "message": message})

                callback = on_progress if kind == "progress" else None
                result = await session.call_tool(tool, json.loads(args or "{}"), progress_callback=callback)
                entry = {"step": kind, "tool": tool, **result_json(result)}
                if kind == "progress":
                    entry["progress"] = seen
                out.append(entry)
            elif kind == "abandon":
                tool, _, more = rest.partition(":")
                args, _, seconds = more.rpartition(":")
                started = time.monotonic()
                # The 2.x SDK tells the server when a call is given up; with 1.x the host does.
                request_id = getattr(session, "_request_id", None) if MAJOR < 2 else None
                try:
                    await asyncio.wait_for(session.call_tool(tool, json.loads(args or "{}")), float(seconds))
                    out.append({"step": kind, "finished": True})
                except (asyncio.TimeoutError, TimeoutError):
                    if request_id is not None:
                        from mcp import types

                        params = types.CancelledNotificationParams(requestId=request_id, reason="given up")
                        await session.send_notification(
                            types.ClientNotification(types.CancelledNotification(params=params))
                        )
                    out.append({"step": kind, "finished": False, "after": time.monotonic() - started})
            elif kind == "sleep":
                await asyncio.sleep(float(rest))
                out.append({"step": kind})
            elif kind == "read":
                read = await session.read_resource(rest)
                out.append({"step": kind, "contents": [c.text for c in read.contents if hasattr(c, "text")]})
            elif kind == "resources":
                templates = await session.list_resource_templates()
                key = "resource_templates" if hasattr(templates, "resource_templates") else "resourceTemplates"
                out.append(
                    {"step": kind, "templates": [field(t, "uri_template", "uriTemplate") for t in getattr(templates, key)]}
                )
            elif kind == "wait-changed":
                out.append({"step": kind, "changed": await wait_changed(session, changed, float(rest))})
            else:
                raise SystemExit(f"unknown step {step}")
        except Exception as error:  # the test asserts on what the client saw
            out.append({"step": kind, "exception": f"{type(error).__name__}: {error}"})
    return out


def flatten(error):
    """An error and, for an exception group, every error inside it."""
    yield error
    for inner in getattr(error, "exceptions", None) or []:
        yield from flatten(inner)


def touch_task():
    touch = os.environ.get("RATCHET_TOUCH")
    if touch:
        with open(touch, "a") as f:
            f.write("\n// edited\n")


async def wait_changed(session, changed, seconds):
    """Edits a task, then waits for the server to say the tools changed: on a stream of its
    own (`subscriptions/listen`) under the 2026-07-28 protocol, in the session before it."""
    modern = getattr(session, "protocol_version", None) == "2026-07-28"
    try:
        if modern:
            async with session.listen(tools_list_changed=True) as subscription:
                touch_task()

                async def first():
                    async for _ in subscription:
                        return True
                    return False

                return await asyncio.wait_for(first(), seconds)
        touch_task()
        await asyncio.wait_for(changed.wait(), seconds)
        return True
    except (asyncio.TimeoutError, TimeoutError):
        return False


async def main():
    transport, *rest = sys.argv[1:]
    split = rest.index("--")
    target, steps = rest[:split], rest[split + 1 :]
    changed = asyncio.Event()

    async def on_message(message):
        root = getattr(message, "root", message)
        if type(root).__name__ == "ToolListChangedNotification":
            changed.set()

    report = {"sdk_major": MAJOR}
    try:
        if transport == "stdio" and MAJOR >= 2:
            from mcp import Client

            params = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
            async with Client(params, message_handler=on_message) as client:
                report["protocol"] = client.protocol_version
                report["steps"] = await run_steps(client, steps, changed)
        elif transport == "stdio":
            params = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    init = await session.initialize()
                    report["protocol"] = field(init, "protocol_version", "protocolVersion")
                    report["steps"] = await run_steps(session, steps, changed)
        else:
            url = target[0]
            headers = {}
            if "--key" in target:
                headers["Authorization"] = "Bearer " + target[target.index("--key") + 1]
            if MAJOR >= 2:
                from mcp import Client
                from mcp.client.streamable_http import streamable_http_client
                from mcp.shared._httpx_utils import create_mcp_http_client

                http = create_mcp_http_client(headers=headers)
                async with Client(streamable_http_client(url, http_client=http), message_handler=on_message) as client:
                    report["protocol"] = client.protocol_version
                    report["steps"] = await run_steps(client, steps, changed)
            else:
                from mcp.client.streamable_http import streamablehttp_client

                async with streamablehttp_client(url, headers=headers) as (read, write, _):
                    async with ClientSession(read, write, message_handler=on_message) as session:
                        init = await session.initialize()
                        report["protocol"] = init.protocolVersion
                        report["steps"] = await run_steps(session, steps, changed)
    except BaseException as error:  # connection refused, 401, 403: reported, not raised
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        report["exception"] = " | ".join(f"{type(e).__name__}: {e}" for e in flatten(error))
    print(json.dumps(report))


asyncio.run(main())
