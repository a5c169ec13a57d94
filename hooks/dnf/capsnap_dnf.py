# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""dnf 4 plugin: capsnap around every transaction of dnf (and yum on dnf 4).

Install as dnf-plugins/capsnap_dnf.py with its configuration
/etc/dnf/plugins/capsnap_dnf.conf.  Like every capsnap hook it never fails
the transaction unless "strict = yes" is set in /etc/capsnap/capsnap.conf:
capsnap itself decides, and this plugin only turns a non-zero exit of the
pre-transaction hook into dnf's own error.
"""

import logging
import os
import subprocess

import dnf

logger = logging.getLogger("dnf.plugin.capsnap")


class Capsnap(dnf.Plugin):
    name = "capsnap_dnf"

    def __init__(self, base, cli):
        super().__init__(base, cli)
        self.executable = "/usr/bin/capsnap"

    def config(self):
        parser = self.read_config(self.base.conf)
        if parser.has_section("main") and parser.has_option("main", "capsnap"):
            self.executable = parser.get("main", "capsnap")

    def _hook(self, name):
        if not os.access(self.executable, os.X_OK):
            return 0
        root = self.base.conf.installroot or "/"
        try:
            done = subprocess.run([self.executable, "--root", root, "hook", name],
                                  stdin=subprocess.DEVNULL, check=False)
        except OSError as exc:
            logger.warning("capsnap: %s: %s", name, exc)
            return 0
        return done.returncode

    def pre_transaction(self):
        if self._hook("dnf-pre-transaction") != 0:
            raise dnf.exceptions.Error("capsnap: strict mode stopped the transaction")

    def transaction(self):
        if self._hook("dnf-post-transaction") != 0:
            logger.error("capsnap: some declared file capabilities are not in place "
                         "(see /var/log/capsnap.log)")
