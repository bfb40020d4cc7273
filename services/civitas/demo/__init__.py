"""``civitas demo``: the seed's district, loaded through the services' public APIs.

Figures from the survey of Qinhuai district (2015): 12 streets (大光路, 双塘, 红花
and 光华路 among them) with 15 street-level citizen service centres, 111
communities, 686 community grid party branches, a few thousand party members,
organs' party organizations paired with communities (双结对). Names of people
are made up from a seeded generator, so every run loads the same district.

One loader per service (``party_orgs``, ``cases``, ``volunteers``, ``funds``, and
``funding``: the saga between cases and funds), each talking only gRPC through the
services' ``v1`` stubs and the chassis' client; ``plan`` holds what they share.
"""

from civitas.demo.cases import load_cases, plan_requests
from civitas.demo.funding import SAGA_REQUESTS, load_case_funding
from civitas.demo.funds import SUBSIDY_FEN, load_funds
from civitas.demo.party_orgs import load_party_orgs
from civitas.demo.plan import plan_district, spread
from civitas.demo.volunteers import load_volunteers

__all__ = [
    "SAGA_REQUESTS",
    "SUBSIDY_FEN",
    "load_case_funding",
    "load_cases",
    "load_funds",
    "load_party_orgs",
    "load_volunteers",
    "plan_district",
    "plan_requests",
    "spread",
]
