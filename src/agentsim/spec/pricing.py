"""Pricing: what a GPU-hour costs, rented (:class:`Rental`) or owned (:class:`Tco`).

Both kinds share the power settings (facility PUE, decode-step power as a fraction of TDP) used to charge
energy; :data:`PricingSpec` is their tagged union. Catalog prices are looked up by :mod:`agentsim.catalog`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat

from agentsim.spec.base import Strict

PriceTier = Literal["rental_3y", "own_hyperscaler", "own_neocloud"]


Pue = Annotated[float, Field(ge=1.0, description="facility power usage effectiveness")]
DecodePowerFraction = Annotated[
    float,
    Field(
        gt=0,
        le=1,
        description="accelerator power in decode-only steps, as a fraction of TDP (steps that compute prompt "
        "tokens draw TDP). Splitwise measured ~380 W decode vs ~700 W prefill on H100",
    ),
]
"""Power settings shared by both pricing kinds."""


class Rental(Strict):
    """$/GPU-hour from the catalog's price table (``tier``) or given explicitly."""

    kind: Literal["rental"] = "rental"
    tier: PriceTier = "rental_3y"
    """catalog price tier: a 3-year rental, or the hourly cost of owning as a hyperscaler or a neocloud"""
    usd_per_gpu_hour: PositiveFloat | None = Field(None, description="override the catalog price")
    pue: Pue = 1.3
    decode_power_fraction: DecodePowerFraction = 0.54


class Tco(Strict):
    """Owned hardware: ``C_hr = (capex * CRF(r, n) + opex_per_year) / 8760 + kW_all_in * PUE * $/kWh``."""

    kind: Literal["tco"] = "tco"
    capex_usd_per_gpu: PositiveFloat
    """purchase cost per GPU, its share of the server and network included"""
    years: PositiveFloat = 4.0
    """depreciation period"""
    interest_rate: NonNegativeFloat = 0.08
    """cost of capital per year, in the capital recovery factor CRF(r, n)"""
    opex_usd_per_gpu_year: NonNegativeFloat = 0.0
    """yearly operating cost per GPU besides power (space, support, staff)"""
    kw_all_in_per_gpu: PositiveFloat | None = Field(None, description="default: the catalog's all-in kW")
    pue: Pue = 1.3
    decode_power_fraction: DecodePowerFraction = 0.54
    usd_per_kwh: NonNegativeFloat = 0.08
    """electricity price"""


PricingSpec = Annotated[Rental | Tco, Field(discriminator="kind")]
