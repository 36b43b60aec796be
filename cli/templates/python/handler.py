"""{{name}}: a Sluice handler (component ABI, world `sluice:function/handler` in wit/, built by
componentize-py). Greets whoever a `com.example.hello` event names; an event without
`data.name` is a fatal error, which sends it to the dead-letter bus without retries.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, types


def greeting(data) -> str:
    """The decision, apart from input and output."""
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("data.name: must be a non-empty string")
    return f"Hello, {name}!"


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> list[types.Event]:
        try:
            text = greeting(json.loads(event.data or b"null"))
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            # Fatal: the event can never succeed; it goes to the dead-letter bus now.
            raise Err(types.Error_Fatal(str(e)))
        log.log(log.Level.INFO, text)
        # Keep the trace going: the reply belongs to the same trace as the event.
        trace = [(k, v) for k, v in event.extensions if k in ("traceparent", "tracestate")]
        return [
            types.Event(
                # Empty id and source: the host fills a fresh id and this Function's source.
                id="",
                source="",
                type="com.example.greeting",
                subject=event.subject,
                time=None,
                datacontenttype="application/json",
                dataschema=None,
                extensions=trace,
                data=json.dumps({"greeting": text}, ensure_ascii=False).encode(),
            )
        ]
