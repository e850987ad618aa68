"""Manual pages: every page in man/ is clean under `mandoc -T lint -W warning` (no output at all),
and relaygatectl(8) names every command `relaygatectl --help` (and each group's --help) lists.

usage: man_test.py MAN_DIR RELAYGATECTL
"""
import os
import re
import subprocess
import sys

PAGES = ["relaygatectl.8", "relaygate-smtpd.8", "relaygate-pop3d.8", "relaygate-policyd.8", "relaygate.json.5"]


def subcommands(ctl, *group):
    """The names under "Subcommands:" in `relaygatectl [GROUP] --help` (CLI11's layout)."""
    p = subprocess.run([ctl, *group, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "%s --help: rc=%d\n%s" % (" ".join(group), p.returncode, p.stderr)
    names, inside = [], False
    for line in p.stdout.splitlines():
        if re.match(r"^Subcommands:\s*$", line):
            inside = True
        elif inside and re.match(r"^  (\S+)", line):
            names.append(line.split()[0])
        elif inside and not line.strip():
            inside = False
    return names


def main():
    man_dir, ctl = sys.argv[1], sys.argv[2]
    failures = []
    for page in PAGES:
        path = os.path.join(man_dir, page)
        p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", path], capture_output=True, text=True, timeout=30)
        if p.returncode != 0 or p.stdout or p.stderr:
            failures.append("%s: mandoc -T lint -W warning (rc=%d):\n%s%s" % (page, p.returncode, p.stdout, p.stderr))

    with open(os.path.join(man_dir, "relaygatectl.8")) as f:
        page = f.read()
    top = subcommands(ctl)
    assert top, "relaygatectl --help lists no subcommands (has its format changed?)"
    commands = []
    for name in top:
        inner = subcommands(ctl, name)
        commands += [[name, sub] for sub in inner] if inner else [[name]]
    assert ["user", "add"] in commands and ["status"] in commands, commands
    for words in commands:
        # A command is documented as `.It Cm user add ...` (or on the .Cm line of an .Xo block).
        if not re.search(r"^\.(?:It )?Cm %s(?: |$)" % re.escape(" ".join(words)), page, re.M):
            failures.append("relaygatectl.8 does not document `relaygatectl %s`" % " ".join(words))
    for option in ("--config", "--help", "--version"):
        if "Fl %s" % option[1:] not in page:
            failures.append("relaygatectl.8 does not document %s" % option)

    for daemon in ("relaygate-smtpd.8", "relaygate-pop3d.8", "relaygate-policyd.8"):
        with open(os.path.join(man_dir, daemon)) as f:
            text = f.read()
        for needle in ("Fl -config", "Fl -check-config", "Fl -allow-root", "Fl -version", "Fl -help",
                       "Dv SIGHUP", "Dv SIGTERM", ".Sh EXIT STATUS", ".Sh FILES"):
            if needle not in text:
                failures.append("%s lacks %r" % (daemon, needle))

    if failures:
        print("\n".join(failures))
        return 1
    print("man pages: %d pages lint-clean, %d relaygatectl commands documented" % (len(PAGES), len(commands)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
