"""party_orgs: the administrative geography and the party organization tree.

Streets, communities, grids and grid posts; party organizations with their
committees, members (transfers, reporting to a residence community, the card of
activities and residents' feedback, appraisals) and organ–community pairings.
"""
