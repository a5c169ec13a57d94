#!/usr/bin/perl
# debhelper sequence add-on: dh $@ --with capsnap, or Build-Depends: dh-sequence-capsnap.
use warnings;
use strict;
use Debian::Debhelper::Dh_Lib;

# Before dh_installdeb, which puts the snippets in place at #DEBHELPER#.
insert_before("dh_installdeb", "dh_capsnap");
# The field itself: empty (and so left out) for packages without declarations.
add_command_options("dh_gencontrol", "--", '-DFile-Capabilities=${capsnap:File-Capabilities}');

1;
