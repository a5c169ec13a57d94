#!/usr/bin/python
# Copyright: 2026 capsnap developers
# GNU General Public License v2.0 or later (see LICENSES/GPL-2.0-or-later.txt or https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: capsnap_facts
short_description: Declared file capabilities, their drift, and the last transaction's changes
description:
  - Returns, as the fact C(capsnap), the capability declarations on the target by source
    (dpkg, rpm, local), the drift C(capsnap check) finds (declared capabilities not in place),
    and what the last package-manager transaction changed (C(capsnap diff)).
  - Reads only; never changes the target.
version_added: "0.1.0"
author:
  - capsnap developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
    details: Linux only; file capabilities are the C(security.capability) extended attribute.
options:
  root:
    description:
      - The system to look at (the running system, an image, a chroot).
    type: path
    default: /
requirements:
  - Python 3.11 or later on the target
  - capsnap on the target, from its .deb (C(python3-capsnap)), its rpm or C(pip install capsnap)
    The module also finds it in those packages' install locations when the interpreter Ansible
    uses does not import it by itself
seealso:
  - module: capsnap.fleet.capsnap_declare
  - module: community.general.capabilities
    description: Sets or removes capabilities with C(setcap); reports nothing about drift.
"""

EXAMPLES = r"""
- name: Gather capsnap facts
  capsnap.fleet.capsnap_facts:

- name: Say which hosts drifted
  ansible.builtin.debug:
    msg: "{{ ansible_facts.capsnap.drift }}"
  when: ansible_facts.capsnap.drifted
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    capsnap:
      description: What capsnap knows about the target's file capabilities.
      returned: always
      type: dict
      contains:
        declarations:
          description:
            - The declarations by source (V(dpkg), V(rpm), V(local)), each a list of
              declarations with C(path), C(capabilities) (canonical), C(declared_as),
              C(source), C(package), C(version), C(origin), C(reason), C(owner) and
              C(fallback).
          returned: always
          type: dict
          sample:
            dpkg: []
            rpm: []
            local:
              - path: /usr/lib/web/bind-helper
                capabilities: cap_net_bind_service=ep
                declared_as: cap_net_bind_service=+ep
                source: local
                package: null
                version: null
                origin: /etc/capsnap/capabilities.d/local.capabilities:1
                reason: binds port 80
                owner: web
                fallback: null
        drift:
          description:
            - One finding per declared path whose capabilities are not in place, as
              C(capsnap check --json) reports it.
          returned: always
          type: list
          elements: dict
          sample:
            - path: /usr/lib/web/bind-helper
              status: drifted
              expected: cap_net_bind_service=ep
              actual: none
              detail: null
              source: local
              package: null
              version: null
              owner: web
              warnings: []
        drifted:
          description: Whether C(drift) is not empty.
          returned: always
          type: bool
          sample: true
        problems:
          description: Declarations capsnap could not read, one message each.
          returned: always
          type: list
          elements: str
          sample: []
        last_transaction:
          description:
            - The last complete package-manager transaction capsnap recorded, with C(id),
              C(manager), C(started), C(packages) and C(changes) (what C(capsnap diff)
              shows); V(null) when none was recorded.
          returned: always
          type: dict
          sample:
            id: 7
            manager: apt
            started: "2026-12-01T16:02:09+0000"
            packages:
              - package: web
                old: "1.0"
                new: "1.1"
            changes:
              - kind: replaced
                path: /usr/lib/web/bind-helper
                before: cap_net_bind_service=ep
                after: cap_net_bind_service=ep
                package: web 1.0 -> 1.1
                capsnap: restored
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.capsnap.fleet.plugins.module_utils.capsnap_import import require_capsnap


def main():
    module = AnsibleModule(argument_spec={"root": {"type": "path", "default": "/"}},
                           supports_check_mode=True)
    require_capsnap(module)
    from capsnap.desired import facts
    from capsnap.errors import CapsnapError
    from capsnap.paths import SystemPaths

    try:
        gathered = facts(SystemPaths(root=module.params["root"]))
    except CapsnapError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"capsnap": gathered})


if __name__ == "__main__":
    main()
