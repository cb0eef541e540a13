"""The report's words in French (default) and Arabic, and how numbers and times are written.

Names of regions, segments and CTs are not here: they come from the HCP registry.
Times are shown in Africa/Casablanca (Morocco's legal time, which moves during Ramadan:
zoneinfo knows the rules, a fixed UTC+1 would be wrong part of the year).
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Africa/Casablanca")
LANGS = ("fr", "ar")

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Indicateurs du programme de transformation digitale des collectivités territoriales",
        "short_title": "Rapport KPI ctfleet",
        "generated": "Établi le",
        "tz": "heure du Maroc (Africa/Casablanca)",
        "period": "Période de la tendance",
        "to": "au",
        "source": "Source",
        "fleet": "Parc",
        "national": "National",
        "cts": "CT",
        "cts_long": "Collectivités territoriales suivies",
        "connected": "Connectées",
        "meeting_norms": "Conformes aux normes",
        "equipped": "Équipées",
        "failing": "En échec",
        "not_assessed": "Non évaluées",
        "with_waivers": "Avec dérogations",
        "waivers_title": "Dérogations en vigueur",
        "waivers_none": "Aucune dérogation en vigueur.",
        "waivers_expiring": "expirent dans les 30 jours",
        "waiver_expires": "Échéance",
        "waiver_approved": "Approuvée par",
        "waiver_reference": "Référence",
        "waiver_reason": "Motif",
        "waiver_soon": "expire bientôt",
        "coverage": "Couverture des contrôles",
        "coverage_short": "Couverture",
        "trend": "Tendance",
        "change": "évolution sur la période",
        "points": "pts",
        "by_lot": "Par lot",
        "by_segment": "Par segment",
        "by_region": "Par région",
        "lot": "Lot",
        "segment": "Segment",
        "region": "Région",
        "map_title": "Conformité aux normes par région",
        "map_legend": "Part des CT conformes aux normes",
        "map_low_coverage": "Couverture inférieure à 50 % : résultat à lire avec prudence",
        "map_no_data": "Pas de données",
        "trend_title": "Évolution nationale",
        "failing_title": "CT en échec, par contrôle",
        "failing_none": "Aucun contrôle en échec.",
        "control": "Contrôle",
        "severity": "Gravité",
        "cts_failing": "CT en échec",
        "devices": "équipement(s) en échec",
        "sev_critical": "critique",
        "sev_high": "élevée",
        "sev_medium": "moyenne",
        "sev_low": "faible",
        "note_norms": "« Conformes aux normes » : chaque contrôle applicable a un résultat connu et récent, et aucun n'échoue "
                      "(un contrôle sous dérogation en vigueur est compté à part). « En échec » : au moins un échec connu. "
                      "« Non évaluées » : des résultats manquent ou sont périmés. Les trois font le total des CT ; une CT "
                      "non connectée n'est jamais conforme. À lire avec la couverture des contrôles.",
        "note_hosted": "« Hébergées » : le tenant que les stacks déclarent pour la CT existe et est actif dans son cloud "
                       "(kube-state-metrics) ; déclaré mais absent ne compte pas. « Mutualisations réalisées » : groupements et "
                       "SDL dont le tenant est présent.",
        "hosted": "Hébergées",
        "mutualisations": "Mutualisations réalisées",
        "targets_title": "Objectifs du programme",
        "targets_none": "Aucun relevé mensuel enregistré (history/kpi/) : seul l'état actuel est comparé aux objectifs.",
        "kpi": "Indicateur",
        "target": "Objectif",
        "deadline": "Échéance",
        "now": "Actuel",
        "status": "État",
        "status_met": "atteint",
        "status_open": "en cours",
        "status_overdue": "échéance dépassée",
        "status_no_data": "pas de données",
        "targets_note": "Valeur de chaque trimestre : dernier relevé mensuel du trimestre (history/kpi/, versionné). Objectifs et sources : standards/targets.yaml.",
        "attr_map": "Fond de carte : © OpenStreetMap contributors, sous licence ODbL (paquet morocco-map 1.3.0).",
        "attr_hcp": "Codes et noms des collectivités : Haut-Commissariat au Plan (HCP), RGPH 2024, réutilisés selon CC BY 4.0.",
        "attr_figures": "Chiffres : règles d'enregistrement ctfleet (monitors/rules/kpi.rules.yml) lues sur l'API HTTP de Prometheus.",
        "csv_dimension": "dimension",
        "csv_code": "code",
        "csv_name": "nom",
        "share": "part",
        "print": "Imprimer",
        "number_on_map": "N° sur la carte",
        "all_fleet": "Ensemble",
        "colon": "\u00a0:",
    },
    "ar": {
        "title": "مؤشرات برنامج التحول الرقمي للجماعات الترابية",
        "short_title": "تقرير مؤشرات ctfleet",
        "generated": "أُعدّ في",
        "tz": "بتوقيت المغرب (Africa/Casablanca)",
        "period": "فترة التطور",
        "to": "إلى",
        "source": "المصدر",
        "fleet": "الأسطول",
        "national": "على المستوى الوطني",
        "cts": "الجماعات الترابية",
        "cts_long": "الجماعات الترابية المتتبَّعة",
        "connected": "متصلة",
        "meeting_norms": "مطابقة للمعايير",
        "equipped": "مجهّزة",
        "failing": "غير مستوفية",
        "not_assessed": "غير مقيَّمة",
        "with_waivers": "بإعفاءات",
        "waivers_title": "الإعفاءات السارية",
        "waivers_none": "لا توجد إعفاءات سارية.",
        "waivers_expiring": "تنتهي خلال 30 يومًا",
        "waiver_expires": "تاريخ الانتهاء",
        "waiver_approved": "صادق عليها",
        "waiver_reference": "المرجع",
        "waiver_reason": "السبب",
        "waiver_soon": "تنتهي قريبًا",
        "coverage": "تغطية نقاط المراقبة",
        "coverage_short": "التغطية",
        "trend": "التطور",
        "change": "التغير خلال الفترة",
        "points": "نقطة",
        "by_lot": "حسب الحصة",
        "by_segment": "حسب الفئة",
        "by_region": "حسب الجهة",
        "lot": "الحصة",
        "segment": "الفئة",
        "region": "الجهة",
        "map_title": "المطابقة للمعايير حسب الجهة",
        "map_legend": "نسبة الجماعات المطابقة للمعايير",
        "map_low_coverage": "تغطية أقل من 50 %: تُقرأ النتيجة بحذر",
        "map_no_data": "لا توجد معطيات",
        "trend_title": "التطور على المستوى الوطني",
        "failing_title": "الجماعات غير المستوفية، حسب نقطة المراقبة",
        "failing_none": "لا توجد نقطة مراقبة غير مستوفاة.",
        "control": "نقطة المراقبة",
        "severity": "درجة الخطورة",
        "cts_failing": "الجماعات غير المستوفية",
        "devices": "جهاز غير مستوفٍ",
        "sev_critical": "حرجة",
        "sev_high": "عالية",
        "sev_medium": "متوسطة",
        "sev_low": "منخفضة",
        "note_norms": "«مطابقة للمعايير»: لكل نقطة مراقبة مطبَّقة نتيجة معروفة وحديثة ولا توجد أي نقطة غير مستوفاة "
                      "(النقاط المعفاة بإعفاء ساري تُحتسب على حدة). «غير مستوفية»: فشل معروف واحد على الأقل. "
                      "«غير مقيَّمة»: نتائج ناقصة أو متقادمة. مجموع الثلاث يساوي عدد الجماعات؛ والجماعة غير المتصلة لا تكون مطابقة أبدًا.",
        "note_hosted": "«المستضافة»: المستأجر الذي تصرّح به الحزم للجماعة موجود ونشِط في سحابتها (kube-state-metrics)؛ "
                       "المصرَّح به الغائب لا يُحتسب. «التعاضدات المنجزة»: التجمعات وشركات التنمية المحلية التي يوجد مستأجرها.",
        "hosted": "المستضافة",
        "mutualisations": "التعاضدات المنجزة",
        "targets_title": "أهداف البرنامج",
        "targets_none": "لا توجد لقطات شهرية مسجلة (history/kpi/): تُقارن الحالة الراهنة وحدها بالأهداف.",
        "kpi": "المؤشر",
        "target": "الهدف",
        "deadline": "الأجل",
        "now": "حاليًا",
        "status": "الحالة",
        "status_met": "محقَّق",
        "status_open": "جارٍ",
        "status_overdue": "تجاوز الأجل",
        "status_no_data": "لا بيانات",
        "targets_note": "قيمة كل فصل: آخر لقطة شهرية فيه (history/kpi/، تحت التحكم في النسخ). الأهداف ومصادرها: standards/targets.yaml.",
        "attr_map": "الخريطة: © OpenStreetMap contributors، بترخيص ODbL (حزمة morocco-map 1.3.0).",
        "attr_hcp": "رموز وأسماء الجماعات: المندوبية السامية للتخطيط، الإحصاء العام للسكان والسكنى 2024، بترخيص CC BY 4.0.",
        "attr_figures": "الأرقام: قواعد التسجيل في ctfleet (monitors/rules/kpi.rules.yml) مقروءة عبر واجهة HTTP لـ Prometheus.",
        "csv_dimension": "البعد",
        "csv_code": "الرمز",
        "csv_name": "الاسم",
        "share": "النسبة",
        "print": "طباعة",
        "number_on_map": "الرقم على الخريطة",
        "all_fleet": "المجموع",
        "colon": ":",
    },
}


def strings(lang: str) -> dict[str, str]:
    if lang not in STRINGS:
        raise ValueError(f"--lang must be one of {', '.join(LANGS)}, not {lang!r}")
    return STRINGS[lang]


def fmt_int(n: int, lang: str) -> str:
    """Thousands separated as each language writes them (Western digits, as Moroccan administrations print).

    >>> fmt_int(1590, "fr"), fmt_int(1590, "ar")
    ('1\\u202f590', '1,590')
    """
    s = f"{n:,}"
    return s.replace(",", "\u202f") if lang == "fr" else s


def fmt_pct(ratio: float | None, lang: str, digits: int = 0) -> str:
    """A ratio as a percentage, or a dash when unknown.

    >>> fmt_pct(0.4817, "fr", 1), fmt_pct(0.4817, "ar")
    ('48,2\\xa0%', '48\\xa0%')
    """
    if ratio is None:
        return "—"
    s = f"{ratio * 100:.{digits}f}"
    return (s.replace(".", ",") if lang == "fr" else s) + "\u00a0%"


def fmt_points(delta: float | None, lang: str) -> str:
    if delta is None:
        return "—"
    pts = delta * 100
    sign = "+" if pts > 0.05 else ("−" if pts < -0.05 else "±")
    s = f"{abs(pts):.1f}"
    return sign + (s.replace(".", ",") if lang == "fr" else s) + "\u00a0" + STRINGS[lang]["points"]


def local_time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc).astimezone(TZ)


def fmt_time(ts: float, lang: str, seconds: bool = False) -> str:
    """A timestamp in Morocco's legal time, with its offset.

    >>> fmt_time(1790000000, "fr")
    '21/09/2026 15:13 (UTC+01:00)'
    """
    t = local_time(ts)
    text = t.strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")
    off = t.strftime("%z")
    return f"{text} (UTC{off[:3]}:{off[3:]})"
