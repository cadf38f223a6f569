"""A flow whose steps return Pydantic models, run in a child interpreter.

argv: STORAGE_URL LOG_FILE [FAIL_KEY]
Each real execution of a step appends "ran <key>" to LOG_FILE; FAIL_KEY makes
that step raise. Step "big" returns a model large enough to be offloaded to a
blob. The last line printed describes the restored outputs and their types.
"""

from __future__ import annotations

import datetime as dt
import enum
import sys
from decimal import Decimal

import anyio
import pydantic

from asyncflow import AsyncFlow, Config, Context, action
from asyncflow.providers import storage_from_url

url, log_file = sys.argv[1:3]
trouble = sys.argv[3] if len(sys.argv) > 3 else ""


class Status(enum.Enum):
    OPEN = "open"
    PAID = "paid"


class Line(pydantic.BaseModel):
    sku: str
    amount: Decimal
    tags: tuple[str, ...] = ()


class Invoice(pydantic.BaseModel):
    number: int
    issued: dt.datetime
    status: Status
    lines: list[Line]
    note: str = ""


def log(key: str) -> None:
    with open(log_file, "a") as out:
        out.write(f"ran {key}\n")
    if trouble == key:
        raise RuntimeError(f"step {key} fails this time")


@action
async def issue() -> Invoice:
    log("issue")
    return Invoice(
        number=7,
        issued=dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc),
        status=Status.OPEN,
        lines=[Line(sku="a", amount=Decimal("1.10"), tags=("x", "y"))],
    )


@action
async def big(previous_context: Context) -> Invoice:
    log("big")
    invoice: Invoice = previous_context.storage
    lines = [Line(sku=f"sku-{i}", amount=Decimal(i) / 100) for i in range(300)]
    return invoice.model_copy(update={"lines": invoice.lines + lines})


@action
async def pay(previous_context: Context) -> Invoice:
    log("pay")
    invoice: Invoice = previous_context.storage
    assert type(invoice) is Invoice, type(invoice)
    return invoice.model_copy(update={"status": Status.PAID})


async def main() -> None:
    async with storage_from_url(url) as storage:
        config = Config(storage=storage, types=[Invoice, Line, Status], offload_over=4096)
        flow = AsyncFlow(config=config, workflow_id="payloads")
        for step in (issue, big, pay):
            flow.task.add(step=step)
        await flow.start(resume=True)
        statuses = ",".join(t.status.value for t in flow.result_task())
        print(f"statuses {statuses}")
        outputs = flow.result_storage()
        if all(isinstance(o, Invoice) for o in outputs):
            kinds = {type(o.lines[0].amount).__name__ for o in outputs}
            print(
                f"types {[type(o).__name__ for o in outputs]} amounts {sorted(kinds)}"
                f" lines {[len(o.lines) for o in outputs]} status {outputs[-1].status}"
                f" issued {outputs[-1].issued.isoformat()}"
            )


anyio.run(main)
