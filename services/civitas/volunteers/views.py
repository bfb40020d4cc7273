"""volunteers' queries (cosmicpython's ``views``): a volunteer as a caller sees them, and
an activity. A volunteer's name is shown here, by the one rule over personal data
(``may_see_personal_data``): to callers who work for a unit the record belongs to (its
community, and a member's organization's units), ``[hidden]`` to others, ``[erased]``
once the person is forgotten."""

from __future__ import annotations

from dataclasses import dataclass

from civitas.chassis.auth import HIDDEN, Principal, may_see_personal_data

from .application import Volunteers
from .domain.activities import Activity
from .domain.volunteers import Volunteer


@dataclass(frozen=True, slots=True)
class VolunteerView:
    """A volunteer as one caller sees them: the clear facts, and the name by the rule."""

    volunteer: Volunteer
    name: str


class VolunteerViews:
    """Reads for volunteers' edge."""

    def __init__(self, app: Volunteers) -> None:
        self.app = app

    async def volunteer(self, principal: Principal, volunteer_id: str) -> VolunteerView:
        return await self.seen(principal, await self.app.get_volunteer(volunteer_id))

    async def activity(self, activity_id: str) -> Activity:
        return await self.app.get_activity(activity_id)

    async def seen(self, principal: Principal, volunteer: Volunteer) -> VolunteerView:
        """The volunteer with their name, shown to whom the record belongs to."""
        if not may_see_personal_data(principal, *volunteer.record_units):
            return VolunteerView(volunteer, HIDDEN)
        name = await self.app.vault.show(volunteer.person_id, volunteer.name_ciphertext)
        return VolunteerView(volunteer, name)
