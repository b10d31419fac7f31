"""Rewrite the operator table of the rules README from the registry:
``python -m qa_pipeline.rules.ops [README]`` (default: configs/rules/README.md)."""

import sys
from pathlib import Path

from ..lang.loader import default_pack_path
from ..lang.registry import with_readme_table


def main(argv: list[str]) -> None:
    path = Path(argv[1]) if len(argv) > 1 else default_pack_path() / "README.md"
    path.write_text(with_readme_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":  # importing it (a walk over the package's modules) writes nothing
    main(sys.argv)
