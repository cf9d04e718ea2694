"""Getting articles in: fetching under the egress policy, the source kinds' parsers, filter
rules, full text, WebSub, newsletters, and the pull pipeline that stores what they find."""
