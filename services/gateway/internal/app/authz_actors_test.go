package app_test

import "maps"

// Which actor answers like which, so that a row of the authorization matrix states only
// what is particular to its operation, and the actors added with room roles (admin, muted,
// kicked, banned) are checked on every operation without restating what they share with
// the others.

// roomActors are the actors every room column (public and private) must answer for.
var roomActors = []actor{owner, admin, member, muted, kicked, banned, exMember, nonMember}

// dmOutsiders are the actors outside the DM: they must all get the answer of a room that
// does not exist.
var dmOutsiders = []actor{owner, admin, muted, kicked, banned, exMember, nonMember}

// actorOrder is the matrices' column order: anonymous first, then down the roles of a
// room, then its outsiders.
var actorOrder = []actor{anon, wrongKind, owner, admin, member, muted, kicked, banned, exMember, nonMember, peer, invited}

// completeAnswers fills in the actors a column leaves out, from the answer of the actor
// they are like there:
//
//   - in a room column (public or private), an admin answers as the owner, a muted member
//     as a member (muting stops posting only: rows of the operations it stops say so), and
//     the kicked, the banned and the ex-member as a non-member: a removal ends the
//     membership like a leave, so every room read is refused to them as to any outsider
//     (rows where a ban differs from a kick, such as a join, say so);
//   - in the DM column, everyone outside the DM answers as the non-member.
//
// An actor whose like has no answer in the column stays out; nil stays nil.
func completeAnswers[E any](column string, m map[actor]E) map[actor]E {
	if m == nil {
		return nil
	}
	like := map[actor]actor{admin: owner, muted: member, kicked: nonMember, banned: nonMember, exMember: nonMember}
	if column == "dm" {
		like = map[actor]actor{}
		for _, a := range dmOutsiders {
			like[a] = nonMember
		}
	}
	out := maps.Clone(m)
	for a, l := range like {
		if _, has := out[a]; has {
			continue
		}
		if e, ok := m[l]; ok {
			out[a] = e
		}
	}
	return out
}

// moderated gives the answers for an operation of a room's owner and admins (role,
// mute, transfer, settings): ownerGets and adminGets for them; every other member (the
// member, the muted member) forbidden; outsiders forbidden on a public room and the
// nonexistent room's not_found on a private one; on the DM, which has no roles, its two
// people bad_request and everyone else not_found.
func moderated[E any](ownerGets, adminGets, noAuth, refused, hidden, badRequest E) (pub, priv, dm map[actor]E) {
	pub = map[actor]E{anon: noAuth, owner: ownerGets, admin: adminGets, member: refused, muted: refused,
		kicked: refused, banned: refused, exMember: refused, nonMember: refused, peer: refused}
	priv = map[actor]E{anon: noAuth, owner: ownerGets, admin: adminGets, member: refused, muted: refused,
		kicked: hidden, banned: hidden, exMember: hidden, nonMember: hidden, invited: hidden}
	dm = map[actor]E{member: badRequest, peer: badRequest}
	for _, a := range dmOutsiders {
		dm[a] = hidden
	}
	return pub, priv, dm
}
