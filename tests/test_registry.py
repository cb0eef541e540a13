"""The CT registry built from the real HCP data: counts, segments, lots, seats, hosting."""

from __future__ import annotations

from collections import Counter

from ctfleet.core.models import Level, Segment, Tier


def test_collectivity_counts_from_data(registry_only):
    reg = registry_only.registry
    levels = Counter(ct.level for ct in reg.cts.values())
    assert levels[Level.REGION] == 12
    assert levels[Level.COUNCIL] == 75  # Casablanca's 8 préfectures d'arrondissements excluded
    assert levels[Level.COMMUNE] == 1503
    assert len(reg.arrondissements) == 41
    assert len(reg.cts) == 1590


def test_segments_reproduce_the_programme_table(registry_only):
    counts = registry_only.registry.segment_counts()
    assert counts[Segment.COMMUNE_ARRONDISSEMENTS] == 6
    assert counts[Segment.COMMUNE_250K_PLUS] == 7
    assert counts[Segment.COMMUNE_100K_250K] == 23
    assert counts[Segment.COMMUNE_50K_100K] == 45
    assert counts[Segment.COMMUNE_15K_50K] == 356
    assert counts[Segment.COMMUNE_UNDER_15K] == 1066
    assert counts[Segment.REGION] == 12
    assert counts[Segment.COUNCIL] == 75


def test_communes_without_2014_figure_are_under_15k(registry_only):
    reg = registry_only.registry
    pm = [ct for ct in reg.cts.values() if ct.level == Level.COMMUNE and ct.population_2014 is None]
    assert sorted(ct.name_fr for ct in pm) == ["Aghouinite", "Lagouira", "Mijik", "Zoug"]
    assert {ct.segment for ct in pm} == {Segment.COMMUNE_UNDER_15K}


def test_codes_stay_text_and_parents_link(registry_only):
    reg = registry_only.registry
    tanger = reg.ct("01.511.01.0")
    assert tanger.name_fr == "Tanger" and tanger.name_ar == "طنجة"
    assert tanger.province_code == "01.511" and tanger.region_code == "01"
    assert reg.ct("01").level == Level.REGION  # leading zero kept
    assert len(tanger.arrondissements) == 4
    for ct in reg.cts.values():
        if ct.level == Level.COMMUNE:
            assert reg.provinces[ct.province_code].region_code == ct.region_code


def test_lot_split_from_rules_and_overrides(registry_only):
    reg = registry_only.registry
    rules = reg.lot_counts(from_rules=True)
    final = reg.lot_counts()
    # Each CT moved by an override accounts for exactly one difference between the splits.
    moved = [ct for ct in reg.cts.values() if ct.lot != ct.lot_from_rules]
    assert sum(abs(final[n] - rules[n]) for n in (1, 2, 3)) == 2 * len(moved)
    assert sum(final.values()) == 1590
    # Regions, councils, communes with arrondissements and communes >= 50,000 are all lot 1.
    big = {Segment.REGION, Segment.COUNCIL, Segment.COMMUNE_ARRONDISSEMENTS, Segment.COMMUNE_250K_PLUS,
           Segment.COMMUNE_100K_250K, Segment.COMMUNE_50K_100K}
    assert all(ct.lot == 1 for ct in reg.cts.values() if ct.segment in big)
    # Chefs-lieux under 50,000 are lot 1 unless overridden.
    for ct in reg.cts.values():
        if ct.is_seat and ct.segment in (Segment.COMMUNE_15K_50K, Segment.COMMUNE_UNDER_15K):
            assert ct.lot_from_rules == 1
        if not ct.is_seat and ct.segment == Segment.COMMUNE_UNDER_15K:
            assert ct.lot_from_rules == 3


def test_programme_lot_figures_with_shipped_overrides(registry_only):
    """The shipped data override reproduces the programme's 190 / 341 / 1,059 (README explains)."""
    final = registry_only.registry.lot_counts()
    assert (final[1], final[2], final[3]) == (190, 341, 1059)


def test_one_seat_per_province_inside_it(registry_only):
    reg = registry_only.registry
    assert set(reg.seats) == set(reg.provinces)
    seats = [ct for ct in reg.cts.values() if ct.is_seat]
    assert len(seats) == 75
    assert all(reg.seats[ct.province_code].commune == ct.code for ct in seats)


def test_hosting_tiers_follow_the_rules(registry_only):
    reg = registry_only.registry
    for ct in reg.cts.values():
        assert Tier.NATIONAL in ct.tiers and Tier.SDR in ct.tiers
        if ct.segment == Segment.COMMUNE_ARRONDISSEMENTS:
            assert Tier.SDL in ct.tiers and Tier.OWN not in ct.tiers
        elif ct.grouping:
            assert Tier.ECI in ct.tiers and Tier.OWN not in ct.tiers
        else:
            assert Tier.OWN in ct.tiers
    assert sum(1 for ct in reg.cts.values() if Tier.SDL in ct.tiers) == 6
    assert all(g.illustrative for g in reg.groupings.values())


def test_region_scope(data_copy):
    from ctfleet.project import load_project

    (data_copy / "rsk.yaml").write_text('name: rsk\nregion: "04"\nfleet: {source: generated}\n', encoding="utf-8")
    p = load_project(profile_path=data_copy / "rsk.yaml", root=data_copy, with_fleet=False)
    assert {ct.region_code for ct in p.registry.cts.values()} == {"04"}
    assert len(p.national.cts) == 1590
    assert len(p.registry.regions) == 1
