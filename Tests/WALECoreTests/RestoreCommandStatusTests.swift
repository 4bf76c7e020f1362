import Testing
@testable import WALECore

@Suite struct RestoreCommandStatusTests {
    typealias S = RestoreCommandStatus

    @Test func onlyNotFoundIsNotAvailable() {
        for mode in S.Mode.allCases {
            #expect(S.status(failure: .notFound, mode: mode) == 1)
            #expect(!S.isFatalForPostgres(S.status(failure: .notFound, mode: mode)))
        }
    }

    @Test func everyOtherFailureStopsArchiveRecovery() {
        let kinds: [WALEError.Kind] = [.user, .overwriteRefused, .notWAL, .corrupt, .io, .internal]
        for k in kinds {
            let s = S.status(failure: k, mode: .archiveRecovery)
            #expect(S.isFatalForPostgres(s), "kind \(k) gave \(s)")
            #expect(s == 128 + WALEError(k, "").exitCode.rawValue)
            #expect(s <= 255)
        }
        #expect(S.status(failure: .user, mode: .archiveRecovery) == 129)
        #expect(S.status(failure: .corrupt, mode: .archiveRecovery) == 193)
        #expect(S.status(failure: .io, mode: .archiveRecovery) == 202)
        #expect(S.status(failure: nil, mode: .archiveRecovery) == 130)
        #expect(S.isFatalForPostgres(S.usageError))
    }

    @Test func standbyKeepsRetryingTransientStorageFailuresOnly() {
        #expect(S.status(failure: .io, mode: .standby) == 74)
        #expect(S.status(failure: .corrupt, mode: .standby) == 65)
        #expect(S.status(failure: .user, mode: .standby) == 129)
        #expect(S.status(failure: .internal, mode: .standby) == 130)
        #expect(S.status(failure: nil, mode: .standby) == 130)
    }
}
