"""volunteers' process managers across services.

- A working party member who reports to a community (party_orgs'
  ``ReportedToCommunity``) gets a volunteer profile; the profile's id derives
  from the member's, so a replayed or duplicated event never makes two. The
  profile then follows the member: to the next community they report to, and to
  the units of their record after a transfer (``TransferReceived``), so its name
  shows to whom party_orgs shows the member's.
- A party member's verified hours (volunteers' own ``HoursVerified``) are
  recorded on the member's card in party_orgs, under an activity id derived from
  the activity and the volunteer, so party_orgs records them once.
"""

from __future__ import annotations

from civitas.eventkit import RecordedEvent
from civitas.eventkit.process import ProcessManager, reacts

from .application import Volunteers
from .members import PartyMembers


def card_activity_id(activity_id: str, volunteer_id: str) -> str:
    """The id of a volunteer's verified hours on their member's card: derived, so a
    redelivered event records them once, and in the ``volunteer-`` namespace that
    party_orgs keeps for this service's token."""
    return f"volunteer-{activity_id}-{volunteer_id}"


class MemberVolunteerProfiles(ProcessManager):
    name = "volunteers.member_profiles"

    def __init__(self, app: Volunteers) -> None:
        self.app = app

    @reacts("ReportedToCommunity")
    async def on_reported(self, event: RecordedEvent) -> None:
        member_id = event.aggregate_id
        await self.app.follow_member(member_id, event.data["community_code"], event.correlation_id)

    @reacts("TransferReceived")
    async def on_transferred(self, event: RecordedEvent) -> None:
        member_id = event.aggregate_id
        await self.app.follow_member(member_id, None, event.correlation_id)


class HoursToMemberCards(ProcessManager):
    name = "volunteers.hours_to_cards"

    def __init__(self, members: PartyMembers, app: Volunteers) -> None:
        self.members = members
        self.app = app

    @reacts("HoursVerified")
    async def on_verified(self, event: RecordedEvent) -> None:
        member_id = event.data.get("member_id")
        if not member_id:
            return
        activity_id = event.aggregate_id
        volunteer_id = event.data["volunteer_id"]
        activity = await self.app.get_activity(activity_id)
        served_until = activity.roster[volunteer_id].checked_out or activity.ends_at
        await self.members.record_hours(
            member_id,
            card_activity_id(activity_id, volunteer_id),
            event.data["tenths_of_hours"],
            f"志愿服务：{activity.title}",
            served_until,
        )
