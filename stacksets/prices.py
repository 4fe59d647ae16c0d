"""The dated price table `stacksets/prices.json` that `deploy.py cost` and the plan's monthly delta read: each price
with its unit, the AWS pricing page it comes from, and whether it was read there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stacksets.errors import UserError

COMMITTED_PRICES = Path(__file__).with_name("prices.json")
PRICES = COMMITTED_PRICES  # what the commands read


class CostError(UserError):
    """A template needs a price the table does not have (a Region, an instance type); worded for the user."""


@dataclass(frozen=True)
class Price:
    key: str
    price: float
    unit: str
    source: str
    status: str  # "confirmed": read on the AWS page named in source; "unconfirmed": the best public figure

    @property
    def hourly(self) -> bool:
        return self.key.endswith("_hour")


@dataclass(frozen=True)
class PriceTable:
    date: str
    currency: str
    hours_per_month: float
    assumptions: dict[str, float]
    fixed: dict[str, dict[str, Price]]  # region -> key -> price
    usage: dict[str, dict[str, Price]]
    path: str = "stacksets/prices.json"

    def price(self, region: str, key: str, where: str) -> Price:
        if region not in self.fixed:
            raise CostError(f"{self.path} has no prices for {region} (needed by {where}); the table covers "
                            f"{', '.join(sorted(self.fixed))}: add the Region's block from the AWS pricing pages, "
                            "with the date and the source of every figure")  # fmt: skip
        try:
            return self.fixed[region][key]
        except KeyError:
            raise CostError(f"{self.path} has no {region} price '{key}' (needed by {where}): add it from the AWS "
                            "pricing page, with its source and whether you confirmed it there") from None


def load_prices(path: Path | None = None) -> PriceTable:
    path = path or PRICES
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CostError(f"{path}: cannot read the price table ({error})") from None

    def prices(section: str) -> dict[str, dict[str, Price]]:
        return {region: {key: Price(key, float(entry["price"]), entry["unit"], entry["source"], entry["status"])
                         for key, entry in block.get(section, {}).items()}
                for region, block in data["regions"].items()}  # fmt: skip

    shown = "stacksets/prices.json" if path == COMMITTED_PRICES else str(path)
    return PriceTable(data["date"], data["currency"], float(data["hours_per_month"]),
                      {key: float(value) for key, value in data["assumptions"].items()},
                      prices("fixed"), prices("usage"), shown)  # fmt: skip


