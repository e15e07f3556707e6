// KafkaRequests reads request counters from running Kafka brokers over JMX, for chatbench's
// profile scenario. It attaches to each broker JVM (same user, local only), starts the
// JVM's local management agent (a no-op if it runs already) and then, for every line read
// on stdin, prints one line of JSON: cumulative counts summed over the brokers, keyed
//   topic/<Metric>/<topic>   BrokerTopicMetrics per topic (TotalProduceRequestsPerSec,
//                            TotalFetchRequestsPerSec, MessagesInPerSec, BytesInPerSec,
//                            BytesOutPerSec)
//   request/<Request>        RequestMetrics RequestsPerSec per request type (all versions)
// or {"error": "..."} when a broker cannot be read. It exits at the end of stdin.
//
// Run with the JDK's source launcher: java KafkaRequests.java <pid> [<pid>...]
import com.sun.tools.attach.VirtualMachine;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class KafkaRequests {
    static final String[] TOPIC_METRICS = {"TotalProduceRequestsPerSec", "TotalFetchRequestsPerSec",
        "MessagesInPerSec", "BytesInPerSec", "BytesOutPerSec"};

    public static void main(String[] args) throws Exception {
        List<MBeanServerConnection> brokers = new ArrayList<>();
        for (String pid : args) {
            VirtualMachine vm = VirtualMachine.attach(pid);
            String addr = vm.startLocalManagementAgent();
            vm.detach();
            JMXConnector c = JMXConnectorFactory.connect(new JMXServiceURL(addr));
            brokers.add(c.getMBeanServerConnection());
        }
        System.out.println("{\"ready\":1}");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (in.readLine() != null) {
            String line;
            try {
                line = json(snapshot(brokers));
            } catch (Exception e) {
                line = "{\"error\":\"" + String.valueOf(e).replace("\\", "\\\\").replace("\"", "'") + "\"}";
            }
            System.out.println(line);
            System.out.flush();
        }
    }

    static Map<String, Long> snapshot(List<MBeanServerConnection> brokers) throws Exception {
        Map<String, Long> out = new TreeMap<>();
        for (MBeanServerConnection s : brokers) {
            for (String m : TOPIC_METRICS) {
                for (ObjectName n : s.queryNames(new ObjectName("kafka.server:type=BrokerTopicMetrics,name=" + m + ",topic=*"), null)) {
                    add(out, "topic/" + m + "/" + n.getKeyProperty("topic"), s.getAttribute(n, "Count"));
                }
            }
            for (ObjectName n : s.queryNames(new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,request=*,version=*"), null)) {
                add(out, "request/" + n.getKeyProperty("request"), s.getAttribute(n, "Count"));
            }
        }
        return out;
    }

    static void add(Map<String, Long> out, String key, Object v) {
        if (v instanceof Number) {
            out.merge(key, ((Number) v).longValue(), Long::sum);
        }
    }

    static String json(Map<String, Long> m) {
        StringBuilder b = new StringBuilder("{");
        for (Map.Entry<String, Long> e : m.entrySet()) {
            if (b.length() > 1) b.append(',');
            b.append('"').append(e.getKey().replace("\"", "")).append("\":").append(e.getValue());
        }
        return b.append('}').toString();
    }
}
