package WalEArchive;
# wal-e in place of cp in PostgreSQL's TAP framework (see tests/pg-tap/README).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my $wale = $ENV{WALE_TAP_BIN} or die "WALE_TAP_BIN is not set";
# WALE_TAP_ASYNC=1: archive with WALE_ARCHIVE_ASYNC=on (a detached helper pushes the backlog).
my $async = $ENV{WALE_TAP_ASYNC} ? 'WALE_ARCHIVE_ASYNC=on ' : '';

no warnings 'redefine';

*PostgreSQL::Test::Cluster::enable_archiving = sub {
	my ($self) = @_;
	my $path = $self->archive_dir;
	print "### Enabling WAL archiving with wal-e for node \"" . $self->name . "\"\n";
	$self->append_conf('postgresql.conf', qq(
archive_mode = on
archive_command = '${async}WALE_FILE_PREFIX=file://localhost$path $wale wal-push "%p" && cp "%p" "$path/%f"'
));
	return;
};

*PostgreSQL::Test::Cluster::enable_restoring = sub {
	my ($self, $root_node, $standby) = @_;
	my $path = $root_node->archive_dir;
	print "### Enabling WAL restore with wal-e for node \"" . $self->name . "\"\n";
	$self->append_conf('postgresql.conf', qq(
restore_command = 'WALE_FILE_PREFIX=file://localhost$path $wale wal-fetch "%f" "%p"'
));
	if ($standby) { $self->set_standby_mode(); } else { $self->set_recovery_mode(); }
	return;
};

1;
