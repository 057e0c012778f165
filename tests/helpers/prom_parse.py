"""Parses Prometheus exposition text from stdin with the reference Python
client's parsers (Debian: python3-prometheus-client) and prints the families
as JSON. argv[1] is "text" (format 0.0.4) or "openmetrics" (strict: it checks
names, escaping, bucket order, +Inf buckets and the # EOF line). Exit 1 with
the parser's message on stderr when the text does not parse."""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text


def number(value: float):
    """JSON has no infinities or NaN: those go as the strings "+Inf", "-Inf", "NaN"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def main() -> int:
    parse = parse_om if sys.argv[1] == "openmetrics" else parse_text
    try:
        families = [
            {
                "name": f.name,
                "type": f.type,
                "help": f.documentation,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": number(s.value)} for s in f.samples
                ],
            }
            for f in parse(sys.stdin.read())
        ]
    except Exception as err:  # the parser's own error is the point
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout)
    return 0


sys.exit(main())
