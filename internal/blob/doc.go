// Package blob serves deltadisk's data plane: the page-blob subset of
// Azure's blob protocol behind the SAS URLs that beginGetAccess returns,
// <public URL>/md-<grant>/abcd?<sas>. Every request is authorised by its
// SAS and by the grant it names being in force; a revoked or expired grant
// ends access at once. Errors are the blob service's XML body with the
// x-ms-error-code header.
//
// # Operations
//
//   - HEAD (Get Blob Properties) and GET (Get Blob), whole or one range
//     (Range or x-ms-range, which wins; "bytes=S-E" or "bytes=S-"). The
//     blob is the disk's bytes followed by a 512-byte fixed VHD footer, so
//     a download is a VHD that Hyper-V and qemu-img read. The footer's
//     unique id is the resource's uniqueId and its time the resource's
//     creation, so every download of a snapshot is byte-identical. An
//     Upload disk still awaiting its upload shows, instead, the 512 bytes
//     the client uploaded there (zeros before any). Bytes stream from the
//     engine with bounded memory; holes cost no storage reads.
//   - GET comp=pagelist (Get Page Ranges): the runs that hold data, the
//     footer included; with x-ms-previous-snapshot-url (the SAS URL of an
//     earlier incremental snapshot of the same family), the runs written
//     since it (PageRange) and the runs that became zero (ClearRange),
//     sorted by offset, in time proportional to what changed. Range,
//     marker and maxresults select a window and page through it.
//   - PUT comp=page (Put Page), x-ms-page-write update or clear, through
//     the SAS of a Write grant. Each write is durable when it is answered
//     201, and every refusal comes before anything is written.
//
// # Wire decisions
//
//   - Runs are reported at the engine's block granularity (64 KiB): a
//     page range may include never-written pages of a written block, which
//     read as zeros. Copying the listed runs reproduces the blob exactly.
//   - The ETag is derived from the resource's uniqueId, write count and
//     size: stable while nothing writes, new after every Put Page, so
//     If-Match on the parallel range reads of a download holds.
//   - A request without x-ms-version or x-ms-date is served (curl, a SAS
//     link in a browser) and answered with x-ms-version 2018-03-28, the
//     SAS's own version; a malformed one is 400 InvalidHeaderValue, as is
//     a malformed range header.
//   - The marker of a page list is opaque: a versioned, base64url-encoded
//     offset where the next page starts; any other value is 400.
//   - The prevsnapshot query (a blob snapshot by time) and the snapshot
//     query have nothing to name here: a managed disk's blob has no blob
//     snapshots. They are answered 409 PreviousSnapshotNotFound and 404
//     BlobNotFound.
//   - A previous-snapshot URL whose SAS does not verify is 403
//     AuthenticationFailed; one whose grant was revoked, expired or whose
//     snapshot is gone is 409 PreviousSnapshotNotFound; another family or a
//     resized disk 409 PreviousSnapshotOperationNotSupported; a later
//     snapshot 400 PreviousSnapshotCannotBeNewer.
//   - No server-side-encryption headers are sent: data is not encrypted
//     at rest.
//
// # Writing to an unattached disk (deltadisk's extension)
//
// Azure accepts Put Page only on an Upload disk awaiting its upload, which
// takes writes anywhere in its uploadSizeBytes, footer included
// (revoking access then validates the footer). deltadisk also grants
// Write access to any unattached disk, so that a disk can change between
// snapshots without a VM: its SAS takes Put Page inside the disk's bytes,
// and a range that reaches into the footer, which the server writes, is
// 416 InvalidPageRange. Snapshots of the disk are refused until access is
// revoked.
package blob
