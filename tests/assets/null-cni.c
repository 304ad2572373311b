/* A CNI plugin that does nothing: ADD answers one made-up address on
 * CNI_IFNAME without touching the kernel. bench-cri runs it through
 * containerd to measure what containerd and the loopback plugin cost on
 * their own, the floor under any plugin's CNI setup. Never for real pods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *cmd = getenv("CNI_COMMAND");
    const char *netns = getenv("CNI_NETNS");
    const char *ifname = getenv("CNI_IFNAME");
    if (cmd && strcmp(cmd, "ADD") == 0) {
        printf("{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"%s\",\"sandbox\":\"%s\"}],"
               "\"ips\":[{\"address\":\"10.99.0.2/24\",\"interface\":0}]}",
               ifname ? ifname : "eth0", netns ? netns : "");
    } else if (cmd && strcmp(cmd, "VERSION") == 0) {
        printf("{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}");
    }
    return 0;
}
