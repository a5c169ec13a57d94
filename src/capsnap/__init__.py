# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""capsnap: Linux file capabilities as a declared, verified part of packaging."""

__version__ = "0.1.0"
