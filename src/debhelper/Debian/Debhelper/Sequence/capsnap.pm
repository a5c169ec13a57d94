#!/usr/bin/perl
# debhelper sequence add-on: Build-Depends: dh-sequence-capsnap (or dh $@ --with capsnap).
use warnings;
use strict;
use Debian::Debhelper::Dh_Lib;

# Snippets, trigger and ${misc:Recommends}: before dh_installdeb puts the
# snippets at #DEBHELPER# and dh_gencontrol reads the substvars.
insert_before("dh_installdeb", "dh_capsnap");
# The field itself, straight into DEBIAN/control once dh_gencontrol (or a
# packager's override_dh_gencontrol) wrote it: never passed through
# dh_gencontrol, whose options an override loses and -dbgsym packages share.
insert_after("dh_gencontrol", "dh_capsnap_control");

1;
