"""Every image of the catalog is a program these tests run, at the version its tag names.

The tag of each image in policies/catalog.yaml must equal what the binary the tests built
reports for `--version` (tests/programs/build.sh), so the catalog never names a version the
tests did not run: a tag with no release (json-exporter v0.8.0 had none) or one the tests
cannot have (redis_exporter v1.90.0) fails here.
"""

import subprocess
from pathlib import Path

import pytest
import yaml

from podrunner import IMAGES, build_program, split_image, version_of

ROOT = Path(__file__).resolve().parents[2]


def catalog_images():
    catalog = yaml.safe_load((ROOT / "policies/catalog.yaml").read_text())
    return sorted({(pattern, name, profile["image"]) for pattern, profiles in catalog["spec"]["profiles"].items()
                   for name, profile in profiles.items()})


@pytest.mark.parametrize("pattern, profile, image", catalog_images(), ids=lambda v: str(v))
def test_the_catalog_image_tag_is_the_version_the_tests_ran(pattern, profile, image):
    repository, tag = split_image(image)
    assert repository in IMAGES, f"{pattern}/{profile}: no test runs {repository} (tests/podrunner IMAGES)"
    program = IMAGES[repository].program
    built = version_of(build_program(program))
    assert tag.lstrip("v") == built, f"{pattern}/{profile}: {image}, but the tests ran {program} {built}"


def test_the_build_recipes_name_the_versions_the_binaries_report():
    listed = subprocess.run(["bash", str(ROOT / "tests/programs/build.sh"), "--list"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    for line in filter(None, listed):
        program, version = line.split()
        assert version_of(build_program(program)) == version, program
