"""What the model is asked: the user's request, the recent calls and a shortlist of the spec's operations,
compact; and the JSON schema whose items are an enum of the shortlisted operation ids, so a constrained decoder
can only name real operations (up to N, each with a short reason)."""

from __future__ import annotations

from typing import Any

SYSTEM = (
    "You predict the next REST API call of a user. Choose from the listed operations only, most likely first. "
    "Answer with JSON."
)


def build_messages(prompt: str, recent_calls: list[str], shortlist: list[str]) -> list[dict[str, str]]:
    calls = "\n".join(f"- {c}" for c in recent_calls[-5:]) or "- (none yet)"
    options = "\n".join(f"- {op}" for op in shortlist)
    request = prompt.strip() or "(not stated)"
    user = f"User request: {request}\nRecent calls, oldest first:\n{calls}\nOperations:\n{options}\nNext calls?"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def output_schema(shortlist: list[str], max_calls: int, reason_chars: int = 40) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_calls,
                "items": {
                    "type": "object",
                    "properties": {
                        "operation": {"enum": shortlist},
                        "reason": {"type": "string", "maxLength": reason_chars},
                    },
                    "required": ["operation", "reason"],
                },
            }
        },
        "required": ["calls"],
    }
