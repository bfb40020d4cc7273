"""volunteers as the platform knows it (registered in :mod:`civitas.catalog`)."""

from civitas.chassis.catalog import Reacting, ServiceSpec

SPEC = ServiceSpec(
    name="volunteers",
    grpc_port=50053,
    metrics_port=9103,
    summary="volunteers, activities, attendance, verified hours, certificates",
    stubs="civitas.volunteers.v1.volunteers_pb2",
    aggregates=(
        "civitas.volunteers.domain.volunteers:Volunteer",
        "civitas.volunteers.domain.activities:Activity",
        "civitas.volunteers.domain.volunteers:CertificateBook",
    ),
    process_managers=(
        Reacting(
            "volunteers.member_profiles",
            "party_orgs",
            "civitas.volunteers.processes:MemberVolunteerProfiles",
        ),
        Reacting(
            "volunteers.hours_to_cards",
            "volunteers",
            "civitas.volunteers.processes:HoursToMemberCards",
        ),
    ),
    personal_data=True,
    peers=("party_orgs",),
)
