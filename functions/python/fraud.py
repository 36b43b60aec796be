"""Payment fraud scoring handler (Sluice component ABI, world `sluice:function/handler`).

Scores a `com.example.payment.authorized` event with a few weighted rules and replies with
`com.example.payment.scored`; a payment scoring 70 or more is also announced as
`com.example.payment.blocked`. A payment without a usable amount can never be scored, so it
is a fatal error (straight to dead-letter). The rules are a pure function, `score`.
"""

import json
from dataclasses import dataclass

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, types

BLOCK_AT = 70
REVIEW_AT = 40
DISPOSABLE_DOMAINS = {"mailinator.com", "tempmail.dev", "guerrillamail.com"}


@dataclass
class Verdict:
    score: int
    decision: str
    reasons: list


class Rejected(Exception):
    """The payment event can never be scored; the message names the field."""


def _number(data: dict, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected(f"data.{key}: must be a number")
    return value


def score(payment: dict, event_time: str | None) -> Verdict:
    """Weighs the payment's risk signals into a 0-100 score and a decision."""
    amount = _number(payment, "amount")
    if amount <= 0:
        raise Rejected("data.amount: must be above 0")
    points, reasons = 0, []

    def flag(weight: int, reason: str) -> None:
        nonlocal points
        points += weight
        reasons.append(reason)

    if amount >= 5000:
        flag(40, "amount of 5000 or more")
    elif amount >= 1000:
        flag(25, "amount of 1000 or more")
    card, ip = payment.get("cardCountry"), payment.get("ipCountry")
    if card and ip and card != ip:
        flag(25, f"card issued in {card}, paid from {ip}")
    if "accountAgeDays" in payment and _number(payment, "accountAgeDays") < 7:
        flag(20, "account younger than 7 days")
    attempts = int(_number(payment, "attemptsLastHour")) if "attemptsLastHour" in payment else 0
    if attempts > 3:
        flag(min(30, 10 * (attempts - 3)), f"{attempts} attempts in the last hour")
    email = payment.get("email", "")
    if isinstance(email, str) and email.rpartition("@")[2].lower() in DISPOSABLE_DOMAINS:
        flag(15, "disposable email domain")
    # Event time is RFC 3339 in UTC here; the sandbox has no clock of its own to ask.
    if event_time and len(event_time) >= 13 and event_time[11:13].isdigit():
        if int(event_time[11:13]) < 5:
            flag(10, "placed between 00:00 and 05:00 UTC")

    points = min(points, 100)
    decision = "block" if points >= BLOCK_AT else "review" if points >= REVIEW_AT else "approve"
    return Verdict(points, decision, reasons)


def _reply(event: types.Event, type_: str, body: dict) -> types.Event:
    # Replies keep the trace context of the event they answer.
    trace = [(k, v) for k, v in event.extensions if k in ("traceparent", "tracestate")]
    return types.Event(
        id="",
        source="",
        type=type_,
        subject=event.subject,
        time=None,
        datacontenttype="application/json",
        dataschema=None,
        extensions=trace,
        data=json.dumps(body, separators=(",", ":")).encode(),
    )


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> list[types.Event]:
        try:
            payment = json.loads(event.data or b"null")
            if not isinstance(payment, dict):
                raise Rejected("data: must be a JSON object")
            verdict = score(payment, event.time)
        except (ValueError, Rejected) as e:
            raise Err(types.Error_Fatal(f"payment {event.id}: {e}"))

        payment_id = payment.get("paymentId", event.id)
        log.log(log.Level.INFO, f"payment {payment_id}: score {verdict.score}, {verdict.decision}")
        replies = [
            _reply(event, "com.example.payment.scored", {
                "paymentId": payment_id,
                "score": verdict.score,
                "decision": verdict.decision,
                "reasons": verdict.reasons,
            })
        ]
        if verdict.decision == "block":
            replies.append(_reply(event, "com.example.payment.blocked", {
                "paymentId": payment_id,
                "amount": payment["amount"],
                "currency": payment.get("currency"),
                "score": verdict.score,
            }))
        return replies
