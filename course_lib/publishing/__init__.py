"""Turning the instructor notebooks into a course: student versions (`release`), the repository URL in badges and
install lines (`repository`), a static site (`static_site`). Called by `scripts/course.sh`."""
